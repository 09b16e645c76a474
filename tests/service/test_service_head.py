"""Integration tests against a REAL Ray head (cluster/start_head.sh: loopback, token auth, own
temp dir and ports), driven through ``python -m asr_tune`` and the Python API.

Usage::

    .venv/bin/python -m pytest tests/service/test_service_head.py -q
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from asr_tune.errors import ServiceError
from asr_tune.service import jobs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

REPO = Path(__file__).resolve().parents[2]
CI_SEARCH_CONFIG = REPO / "configs" / "ci_search_tiny.yaml"

# A tiny Tune experiment in the layout `asr-tune search` writes (<storage>/<name>): one of two
# trials raises, so the script exits 1 and the job FAILS with a trial error to report.
TUNE_SCRIPT = '''
import sys

import ray
from ray import tune

def trainable(config):
    for step in range(3):
        if config["x"] == 2 and step == 1:
            raise ValueError("boom: trial x=2 diverged")
        tune.report({"val_wer": 0.5 / (config["x"] + step + 1)})

storage, name = sys.argv[1], sys.argv[2]
ray.init()
results = tune.Tuner(
    trainable, param_space={"x": tune.grid_search([1, 2])},
    tune_config=tune.TuneConfig(metric="val_wer", mode="min"),
    run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0,
                              failure_config=tune.FailureConfig(max_failures=0)),
).fit()
sys.exit(1 if results.errors else 0)
'''


def _one_error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _status(cli: Any, head: Any, job_id: str, *extra: str, timeout: float = 120) -> dict[str, Any]:
    proc = cli("status", job_id, "--address", head.url, "--token-file", str(head.token_file), "--json",
               *extra, timeout=timeout)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def _wait_for(head: Any, job_id: str, wanted: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = jobs.status(job_id, address=head.url, token_file=head.token_file, read_experiment=False)
        if st.status == wanted:
            return
        time.sleep(0.5)
    raise AssertionError(f"{job_id} never became {wanted}")


def _tiny_config(path: Path) -> Path:
    path.write_text("search:\n  num_samples: 1\n  space:\n"  # submit's pre-flight needs a space
                    "    optim.lr: {type: loguniform, low: 0.001, high: 0.01}\n")
    return path


# --------------------------------------------------------------------------- errors


def test_submission_without_token_is_rejected(ray_head: Any, cli: Any, tmp_path: Path) -> None:
    cfg = _tiny_config(tmp_path / "ok.yaml")
    # cli's HOME is empty, so there is no ~/.ray/auth_token to fall back on
    _one_error_line(cli("submit", str(cfg), "--address", ray_head.url), "requires an authentication token",
                    "--token-file")
    _one_error_line(cli("submit", str(cfg), "--address", ray_head.url, RAY_AUTH_TOKEN="0" * 64),
                    "rejected the authentication token", "RAY_AUTH_TOKEN")
    bad_file = tmp_path / "wrong.token"
    bad_file.write_text("not-the-token\n")
    _one_error_line(cli("jobs", "--address", ray_head.url, "--token-file", str(bad_file)), "rejected")
    assert not [j for j in jobs.list_jobs(ray_head.url, ray_head.token_file) if j.name == "ok"]


def test_invalid_config_is_rejected_before_contacting_the_head(ray_head: Any, cli: Any,
                                                                tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: -1\n")
    # no token: had the head been contacted first, this would be the auth error
    _one_error_line(cli("submit", str(bad), "--address", ray_head.url), "optim.lr")
    _one_error_line(cli("submit", str(_tiny_config(tmp_path / "ok.yaml")), "--address", ray_head.url,
                        "--num-samples", "0"), "num_samples")


def test_unreachable_and_unknown_give_one_line(ray_head: Any, cli: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    tok = ("--token-file", str(ray_head.token_file))
    _one_error_line(cli("status", "raysubmit_nope", "--address", f"127.0.0.1:{closed_port}", *tok),
                    "cannot reach", "connection refused")
    _one_error_line(cli("jobs"), "no Ray head address")
    for args in (("status", "raysubmit_nope"), ("logs", "raysubmit_nope", "-f")):
        _one_error_line(cli(*args, "--address", ray_head.url, *tok), "no job 'raysubmit_nope'")
    # the same through the Python API (in-process: cheaper than more CLI runs)
    for call in (lambda: jobs.logs("raysubmit_nope", address=ray_head.url, token_file=ray_head.token_file),
                 lambda: jobs.stop("raysubmit_nope", address=ray_head.url, token_file=ray_head.token_file)):
        with pytest.raises(ServiceError, match="no job 'raysubmit_nope'") as err:
            call()
        assert "\n" not in str(err.value)
    # RAY_ADDRESS is the default address
    ok = cli("jobs", *tok, RAY_ADDRESS=ray_head.url)
    assert ok.returncode == 0, ok.stderr


# --------------------------------------------------------------------------- job lifecycle


def test_trivial_job_submit_status_logs(ray_head: Any, cli: Any) -> None:
    """Python-API submit of a plain command; the job's own ray.init() authenticates to the GCS."""
    script = ("echo hello-asr-tune; "
              "python -c \"import ray; ray.init(); print('cpus', ray.cluster_resources()['CPU'])\"")
    res = jobs.submit_entrypoint(script, address=ray_head.url, token_file=ray_head.token_file,
                                 metadata={"asr_tune": "1", "name": "trivial"})
    assert res.job_id.startswith("raysubmit_")
    assert res.dashboard_url == f"{ray_head.url}/#/jobs/{res.job_id}"
    st = _status(cli, ray_head, res.job_id, "--wait", "--timeout", "120", timeout=150)
    assert st["status"] == "SUCCEEDED", st
    logs = cli("logs", res.job_id, "--address", ray_head.url, "--token-file", str(ray_head.token_file))
    assert logs.returncode == 0 and "hello-asr-tune" in logs.stdout and "cpus 2.0" in logs.stdout
    listed = cli("jobs", "--address", ray_head.url, "--token-file", str(ray_head.token_file), "--json")
    assert {"job_id": res.job_id, "status": "SUCCEEDED", "name": "trivial"}.items() <= \
        next(j for j in json.loads(listed.stdout) if j["job_id"] == res.job_id).items()
    table = cli("status", "--address", ray_head.url, "--token-file", str(ray_head.token_file))
    assert table.returncode == 0 and "SUCCEEDED" in table.stdout  # no JOB: the newest asr-tune job


def test_follow_logs_until_the_job_ends(ray_head: Any, cli: Any) -> None:
    res = jobs.submit_entrypoint("for i in 1 2 3; do echo tick-$i; sleep 0.5; done",
                                 address=ray_head.url, token_file=ray_head.token_file)
    proc = cli("logs", res.job_id, "--follow", "--address", ray_head.url,
               "--token-file", str(ray_head.token_file), timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.index("tick-1") < proc.stdout.index("tick-3")


def test_stop_a_long_running_job(ray_head: Any, cli: Any) -> None:
    res = jobs.submit_entrypoint("echo started; sleep 600", address=ray_head.url,
                                 token_file=ray_head.token_file)
    _wait_for(ray_head, res.job_id, "RUNNING")
    proc = cli("stop", res.job_id, "--address", ray_head.url, "--token-file", str(ray_head.token_file))
    assert proc.returncode == 0 and proc.stdout.strip() == f"{res.job_id}: STOPPED", proc
    assert _status(cli, ray_head, res.job_id)["status"] == "STOPPED"
    again = cli("stop", res.job_id, "--address", ray_head.url, "--token-file", str(ray_head.token_file))
    assert again.returncode == 0 and "STOPPED" in again.stdout


def test_failed_job_with_an_experiment(ray_head: Any, cli: Any, tmp_path: Path) -> None:
    """status reads <storage>/<name> from the job metadata: trial counts, best val_wer, trial error."""
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "tiny_tune.py").write_text(TUNE_SCRIPT)
    storage = str(ray_head.work / "storage")
    res = jobs.submit_entrypoint(f"python tiny_tune.py {storage} tiny", address=ray_head.url,
                                 token_file=ray_head.token_file, runtime_env={"working_dir": str(tmp_path / "job")},
                                 metadata={"asr_tune": "1", "name": "tiny", "storage": storage,
                                           "metric": "val_wer", "mode": "min"})
    st = _status(cli, ray_head, res.job_id, "--wait", "--timeout", "180", timeout=210)
    assert st["status"] == "FAILED", st
    exp = st["experiment"]
    assert exp is not None, st
    assert exp["counts"] == {"ERROR": 1, "TERMINATED": 1}, exp
    assert exp["best"] == pytest.approx(0.125)
    assert "ValueError: boom: trial x=2 diverged" in st["failure"]
    table = cli("status", res.job_id, "--address", ray_head.url, "--token-file", str(ray_head.token_file))
    assert table.returncode == 0
    for text in ("FAILED", "2 (1 ERROR, 1 TERMINATED)", "best val_wer", "0.125", "boom: trial x=2 diverged"):
        assert text in table.stdout, table.stdout
    # a job that fails without an experiment shows the tail of its logs instead
    plain = jobs.submit_entrypoint("echo last-words-before-failing; exit 3", address=ray_head.url,
                                   token_file=ray_head.token_file)
    st2 = _status(cli, ray_head, plain.job_id, "--wait", "--timeout", "60", timeout=90)
    assert st2["status"] == "FAILED" and "last-words-before-failing" in st2["failure"]


# --------------------------------------------------------------------------- the real search


@pytest.mark.skipif(not CI_SEARCH_CONFIG.is_file(), reason=f"{CI_SEARCH_CONFIG} not written yet")
def test_submit_tiny_search(ray_head: Any, cli: Any) -> None:
    """`asr-tune submit configs/ci_search_tiny.yaml` runs `asr-tune search` on the head to SUCCEEDED."""
    storage = ray_head.work / "search-storage"
    sub = cli("submit", str(CI_SEARCH_CONFIG), "--address", ray_head.url, "--token-file",
              str(ray_head.token_file), "--storage", str(storage), "--name", "ci-tiny", "--json")
    assert sub.returncode == 0, sub.stderr
    res = json.loads(sub.stdout)
    assert res["entrypoint"].startswith("asr-tune search ci_search_tiny.yaml --address auto")
    st = _status(cli, ray_head, res["job_id"], "--wait", "--timeout", "300", timeout=330)
    logs = cli("logs", res["job_id"], "--address", ray_head.url, "--token-file", str(ray_head.token_file))
    assert st["status"] == "SUCCEEDED", (st, logs.stdout[-3000:])
    exp = st["experiment"]
    assert exp is not None and exp["path"] == f"{storage}/ci-tiny", st
    assert exp["counts"].get("TERMINATED", 0) >= 1 and exp["best"] is not None, exp
    assert logs.returncode == 0 and logs.stdout.strip()


# --------------------------------------------------------------------------- stop (keep last)


def test_stop_script_only_stops_its_own_head(ray_head: Any) -> None:
    """`start_head.sh stop --temp-dir DIR` ends this head and its job drivers, nothing else."""
    decoy = subprocess.Popen(["bash", "-c", "exec -a 'raylet --temp_dir=/tmp/ray-someone-else' sleep 120"],
                             start_new_session=True)
    try:
        sleeper = f"sleep {random.randint(7000, 9999)}"  # a cmdline unique to this test's job
        running = jobs.submit_entrypoint(sleeper, address=ray_head.url, token_file=ray_head.token_file)
        _wait_for(ray_head, running.job_id, "RUNNING")
        # RUNNING is reported just before the supervisor spawns the entrypoint: wait for the process
        # itself, or a stop in that window kills the supervisor and orphans a not-yet-seen child
        deadline = time.time() + 60
        while time.time() < deadline and not subprocess.run(
                ["pgrep", "-f", f"^{sleeper}$"], capture_output=True, text=True).stdout.strip():
            time.sleep(0.5)
        proc = subprocess.run(["bash", str(REPO / "cluster" / "start_head.sh"), "stop", "--temp-dir",
                               str(ray_head.temp_dir)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        leftovers = subprocess.run(["pgrep", "-f", str(ray_head.temp_dir)], capture_output=True, text=True)
        assert leftovers.stdout.strip() == "", leftovers.stdout
        driver = subprocess.run(["pgrep", "-f", f"^{sleeper}$"], capture_output=True, text=True)
        assert driver.stdout.strip() == "", "the running job's process survived the stop"
        assert decoy.poll() is None, "the stop script killed an unrelated Ray-looking process"
        with pytest.raises(ServiceError, match="cannot reach"):
            jobs.list_jobs(ray_head.url, ray_head.token_file)
    finally:
        os.killpg(decoy.pid, signal.SIGKILL)
        decoy.wait()

