"""A REAL 3-node Ray cluster on this machine (``cluster/local_cluster.sh up``: head + 2 workers x 2
declared GPUs, token auth): per-trial GPU placement, a worker node killed mid-search, jobs and the
dashboard REST API, the compact job log.

One search job (4 trials x 1 declared GPU, ``configs/ci_search_tiny.yaml``) is submitted with
``asr-tune submit``; once every trial has reported, worker 1's raylet is SIGKILLed; the tests then
check what the job, its results and the dashboard say.

Usage::

    .venv/bin/python -m pytest tests/cluster/test_multinode.py -q
"""
from __future__ import annotations

import json
import re
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cluster_helpers import REPO, LocalCluster, poll, read_results

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CONFIG = REPO / "configs" / "ci_search_tiny.yaml"
EPOCHS = 12  # long enough that the kill lands while the victim's trials run
N_TRIALS = 4
ANSI = re.compile(r"\x1b\[[0-9;]*m")
REPORT_LINE = re.compile(r"^\[\s*\d+s\] (\S+) ep\s+\d+ ")


@dataclass
class SearchRun:
    job_id: str
    exp: Path
    victim: str  # node id of the killed worker
    survivor: str
    before: dict[str, list[dict]]  # trial dir -> its reports when the kill was decided
    status: dict[str, Any] = field(default_factory=dict)
    status_text: str = ""
    log: str = ""
    results: dict[str, list[dict]] = field(default_factory=dict)  # trial dir -> all its reports
    table: list[dict] = field(default_factory=list)  # results.json rows

    def trial_dir(self, trial_id: str) -> str:
        return next(d for d in self.results if f"_{trial_id}_" in d)


def _trial_dirs(exp: Path) -> dict[str, list[dict]]:
    if not exp.is_dir():
        return {}
    return {d.name: read_results(d) for d in sorted(exp.glob("run_trial_*")) if d.is_dir()}


@pytest.fixture(scope="module")
def search_run(local_cluster: LocalCluster) -> SearchRun:
    c = local_cluster
    storage = c.work / "storage"
    sub = c.cli("submit", str(CONFIG), "--storage", str(storage), "--name", "multinode", "--num-samples",
                str(N_TRIALS), "--set", "resources.gpus_per_worker=1", "--set", "resources.cpus_per_worker=1",
                "--set", f"trainer.max_epochs={EPOCHS}", "--set", "search.max_failures=2",
                "--set", "search.evaluate_best_on_test=false", "--json")
    assert sub.returncode == 0, sub.stderr
    job_id = json.loads(sub.stdout)["job_id"]
    victim, survivor = c.raylet_node_id("w1"), c.raylet_node_id("w2")
    exp = storage / "multinode"

    def all_running() -> dict[str, list[dict]] | None:
        job = c.api(f"/api/jobs/{job_id}")["status"]
        assert job in ("PENDING", "RUNNING"), (job, ANSI.sub("", c.cli("logs", job_id).stdout)[-4000:])
        res = _trial_dirs(exp)
        if len(res) < N_TRIALS or any(not r for r in res.values()):
            return None
        on_victim = [r for r in res.values() if r[-1].get("ray_node_id") == victim]
        assert all(r[-1]["training_iteration"] < EPOCHS for r in on_victim), \
            "a trial on the node to kill finished before every trial had reported"
        return res

    before = poll(all_running, timeout=300, what="every trial's first report")
    kill = c.script("kill-worker", "1")
    assert kill.returncode == 0, kill.stderr
    run = SearchRun(job_id, exp, victim, survivor, before)
    st = c.cli("status", job_id, "--wait", "--timeout", "300", "--json", timeout=330)
    assert st.returncode in (0, 1), st.stderr
    run.status = json.loads(st.stdout)
    run.log = ANSI.sub("", c.cli("logs", job_id).stdout)
    assert run.status["status"] == "SUCCEEDED", (run.status, run.log[-4000:])
    run.status_text = c.cli("status", job_id).stdout
    run.results = _trial_dirs(exp)
    run.table = json.loads((exp / "results.json").read_text())
    return run


def test_infeasible_gpu_request_fails_before_any_trial(local_cluster: LocalCluster) -> None:
    """3 GPUs per worker on nodes with 2: the job fails with the numbers and starts no trial."""
    c = local_cluster
    storage = c.work / "storage-too-big"
    sub = c.cli("submit", str(CONFIG), "--storage", str(storage), "--name", "too-big", "--set",
                "resources.gpus_per_worker=3", "--json")
    assert sub.returncode == 0, sub.stderr
    job_id = json.loads(sub.stdout)["job_id"]
    st = c.cli("status", job_id, "--wait", "--timeout", "240", "--json", timeout=270)
    assert json.loads(st.stdout)["status"] == "FAILED", st.stdout
    log = c.cli("logs", job_id).stdout
    assert "resources.gpus_per_worker=3 but the largest node has 2 GPU(s)" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert not list((storage / "too-big").glob("run_trial_*")), "a trial started"


def test_four_concurrent_trials_get_disjoint_gpus(search_run: SearchRun) -> None:
    before = search_run.before
    assert len(before) == N_TRIALS
    # when the kill was decided, all four trials had reported and none had finished: they ran at once
    assert all(0 < r[-1]["training_iteration"] < EPOCHS for r in before.values()), \
        {d: r[-1]["training_iteration"] for d, r in before.items()}
    first = [r[0] for r in before.values()]
    placed = {(m["ray_node_id"], m["gpu_ids"]) for m in first}
    assert len(placed) == N_TRIALS, placed  # pairwise-disjoint (node, GPU id)
    assert {n for n, _ in placed} == {search_run.victim, search_run.survivor}  # never the GPU-less head
    for m in first:
        assert m["gpu_ids"] in ("0", "1") and m["cuda_visible_devices"] == m["gpu_ids"], m


def test_killed_node_trials_resume_from_checkpoint_elsewhere(search_run: SearchRun) -> None:
    run = search_run
    rows = {r["trial_id"]: r for r in run.table}
    assert len(rows) == N_TRIALS and all(r["status"] == "TERMINATED" for r in rows.values()), rows
    retried = 0
    for trial_id, row in rows.items():
        reports = run.results[run.trial_dir(trial_id)]
        # every epoch reported exactly once: nothing re-run before the last checkpoint, nothing lost
        assert [m["training_iteration"] for m in reports] == list(range(1, EPOCHS + 1)), trial_id
        nodes = [m["ray_node_id"] for m in reports]
        if nodes[0] == run.victim:
            retried += 1
            assert row["retries"] >= 1, row
            cut = next(i for i, n in enumerate(nodes) if n != run.victim)
            assert cut >= 1 and set(nodes[cut:]) == {run.survivor}, nodes
            assert row["placements"].startswith(run.victim[:8]) and ">" in row["placements"], row
            assert f"{trial_id} failed" in run.log and "retrying from its last checkpoint" in run.log
        else:
            assert row["retries"] == 0 and set(nodes) == {run.survivor}, row
            assert len({m["pid"] for m in reports}) == 1, "a surviving trial was restarted"
    assert retried == 2, rows


def test_dashboard_api_lists_job_and_nodes(local_cluster: LocalCluster, search_run: SearchRun) -> None:
    c = local_cluster
    jobs = {j["submission_id"]: j["status"] for j in c.api("/api/jobs/")}
    assert jobs.get(search_run.job_id) == "SUCCEEDED", jobs
    nodes = c.api("/api/v0/nodes")["data"]["result"]["result"]
    assert len(nodes) == 3, nodes
    state = {n["node_id"]: n["state"] for n in nodes}
    assert state[search_run.victim] == "DEAD" and state[search_run.survivor] == "ALIVE", state
    head = [n for n in nodes if n["is_head_node"]]
    assert len(head) == 1 and head[0]["state"] == "ALIVE"
    assert all(n["resources_total"].get("GPU") == 2 for n in nodes if not n["is_head_node"])
    with pytest.raises(urllib.error.HTTPError) as err:
        c.api("/api/v0/nodes", token=False)
    assert err.value.code == 401


def test_job_log_has_one_compact_line_per_report(search_run: SearchRun) -> None:
    lines = search_run.log.splitlines()
    reports = [m.group(1) for m in map(REPORT_LINE.match, lines) if m]
    assert len(reports) == sum(len(r) for r in search_run.results.values()) == N_TRIALS * EPOCHS
    assert all(len(ln) <= 120 for ln in lines if REPORT_LINE.match(ln) or ln.startswith("[")), \
        max(lines, key=len)
    assert "Trial status" not in search_run.log and "Trial name" not in search_run.log


def test_status_shows_node_and_gpu_ids_per_trial(search_run: SearchRun) -> None:
    trials = {t["trial"]: t for t in search_run.status["experiment"]["trials"]}
    assert len(trials) == N_TRIALS
    for trial_id, t in trials.items():
        last = search_run.results[search_run.trial_dir(trial_id)][-1]
        assert (t["node_id"], t["gpu_ids"]) == (last["ray_node_id"], last["gpu_ids"]), t
        assert t["cuda_visible_devices"] == last["cuda_visible_devices"]
        row = next(ln for ln in search_run.status_text.splitlines() if ln.startswith(trial_id))
        assert last["ray_node_id"][:12] in row and f" {last['gpu_ids']} " in row, row
    assert sum(t["retries"] >= 1 for t in trials.values()) == 2, trials


def test_declared_gpus_without_cuda_fall_back_to_cpu_once(search_run: SearchRun) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert all(r["accelerator"] == "cpu" for r in search_run.table)
    said = re.findall(r"\(run_trial pid=(\d+)[^)]*\) resources\.gpus_per_worker=1 but no CUDA device",
                      search_run.log)
    assert said, search_run.log[-3000:]
    assert len(said) == len(set(said)), f"said more than once by one process: {said}"
