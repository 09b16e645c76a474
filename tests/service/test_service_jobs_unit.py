"""Fast tests of asr_tune.service (no Ray cluster): address/token resolution, entrypoint, staging,
experiment-state reading, CLI registration, and local config validation before any network use."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
import yaml

from asr_tune.errors import ConfigError, ServiceError
from asr_tune.service import commands, jobs


@pytest.fixture(autouse=True)
def _no_ray_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_import_starts_nothing() -> None:
    code = "import sys, asr_tune.service.jobs, asr_tune.service.commands; print('ray' in sys.modules)"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("given,expected", [
    ("127.0.0.1:8265", "http://127.0.0.1:8265"),
    ("http://head:8265/", "http://head:8265"),
    ("https://ray.example.com", "https://ray.example.com"),
])
def test_resolve_address(given: str, expected: str) -> None:
    assert jobs.resolve_address(given) == expected


def test_resolve_address_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:8265")
    assert jobs.resolve_address(None) == "http://10.0.0.5:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://api:8265")
    assert jobs.resolve_address(None) == "http://api:8265"
    assert jobs.resolve_address("http://explicit:1") == "http://explicit:1"


@pytest.mark.parametrize("bad", [None, "auto", "ray://head:10001", "ftp://x"])
def test_resolve_address_errors(bad: str | None) -> None:
    with pytest.raises(ServiceError) as err:
        jobs.resolve_address(bad)
    assert "\n" not in str(err.value)


def test_token_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home_token = tmp_path / "home" / ".ray" / "auth_token"
    assert jobs.resolve_token() is None
    home_token.parent.mkdir(parents=True)
    home_token.write_text("from-home\n")
    assert jobs.resolve_token().value == "from-home"
    path_token = tmp_path / "t2"
    path_token.write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path_token))
    assert jobs.resolve_token().value == "from-path"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert jobs.resolve_token() == jobs.Token("from-env", "RAY_AUTH_TOKEN")
    explicit = tmp_path / "t3"
    explicit.write_text("  explicit  \n")
    assert jobs.resolve_token(explicit).value == "explicit"


def test_token_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="cannot read token file"):
        jobs.resolve_token(tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ServiceError, match="empty"):
        jobs.resolve_token(tmp_path / "empty")


def test_build_entrypoint() -> None:
    cmd = jobs.build_entrypoint("my cfg.yaml", "/shared/runs", "exp1", "tpe", 4, ["--set", "optim.lr=1e-3"])
    assert cmd == ("asr-tune search 'my cfg.yaml' --address auto --storage /shared/runs --name exp1 "
                   "--searcher tpe --num-samples 4 --set optim.lr=1e-3")
    assert jobs.build_entrypoint("c.yaml", "s3://b/p", "n", use_module=True).startswith(
        "python -m asr_tune search c.yaml --address auto")


def test_stage_working_dir(tmp_path: Path) -> None:
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("search:\n  num_samples: 2\n")
    stage = tmp_path / "stage"
    stage.mkdir()
    jobs._stage_working_dir(stage, cfg, "run1", "/abs/storage", include_package=True)
    shipped = yaml.safe_load((stage / "exp.yaml").read_text())
    assert shipped["search"] == {"num_samples": 2, "name": "run1", "storage": "/abs/storage"}
    assert (stage / "asr_tune" / "service" / "jobs.py").is_file()
    assert not list(stage.rglob("__pycache__"))


def test_invalid_config_is_rejected_before_contacting_the_cluster(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_network(*a: object, **k: object) -> None:
        raise AssertionError("contacted the cluster")

    monkeypatch.setattr(jobs, "connect", no_network)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  num_layerz: 3\n")
    with pytest.raises(ConfigError, match="model.num_layerz"):
        jobs.submit(bad, address="http://127.0.0.1:9")
    good = tmp_path / "good.yaml"
    good.write_text("search:\n  num_samples: 2\n")
    with pytest.raises(ConfigError, match="num_samples"):
        jobs.submit(good, address="http://127.0.0.1:9", num_samples=0)
    with pytest.raises(ConfigError, match="not found"):
        jobs.submit(tmp_path / "missing.yaml", address="http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="optim.lrr"):
        jobs.submit(good, address="http://127.0.0.1:9", overrides=["optim.lrr=0.1"])


def test_unreachable_address_is_one_line() -> None:
    with pytest.raises(ServiceError, match="connection refused") as err:
        jobs.connect("http://127.0.0.1:9")
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- experiment state


def _fake_experiment(root: Path) -> Path:
    """An experiment dir in the layout Ray Tune 2.60 writes (experiment_state-*.json + trial dirs)."""
    exp = root / "exp"
    trials = [("t0", "TERMINATED", 0.31, None), ("t1", "TERMINATED", 0.12, None),
              ("t2", "ERROR", 0.50, "ValueError: loss is nan"), ("t3", "RUNNING", 0.20, None),
              ("t4", "PENDING", None, None)]
    data = []
    for tid, status, wer, error in trials:
        (exp / f"f_{tid}").mkdir(parents=True)
        state = {"trial_id": tid, "status": status, "relative_logdir": f"f_{tid}"}
        runtime = {"metric_analysis": {} if wer is None else {"val_wer": {"min": wer, "max": wer + 0.1}},
                   "error_filename": "error.txt" if error else None}
        if error:
            (exp / f"f_{tid}" / "error.txt").write_text(
                f"Failure # 1\nTraceback (most recent call last):\n  File \"x.py\", line 1\n{error}\n")
        data.append([json.dumps(state), json.dumps(runtime)])
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text(
        json.dumps({"trial_data": data, "runner_data": {}, "stats": {}}))
    return exp


def test_read_experiment_state(tmp_path: Path) -> None:
    summary = jobs.read_experiment(str(_fake_experiment(tmp_path)))
    assert summary is not None
    assert summary.counts == {"ERROR": 1, "PENDING": 1, "RUNNING": 1, "TERMINATED": 2}
    assert summary.num_trials == 5
    assert summary.best == pytest.approx(0.12) and summary.best_trial == "t1"
    assert [(e.trial, e.message) for e in summary.errors] == [("t2", "ValueError: loss is nan")]
    maxed = jobs.read_experiment(str(tmp_path / "exp"), mode="max")
    assert maxed.best == pytest.approx(0.6) and maxed.best_trial == "t2"


def test_read_experiment_without_state_file(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    (exp / "trial_a").mkdir(parents=True)
    (exp / "trial_a" / "result.json").write_text('{"val_wer": 0.4}\n{"val_wer": 0.25}\n')
    (exp / "trial_b").mkdir()
    (exp / "trial_b" / "params.json").write_text("{}")
    (exp / "trial_b" / "error.txt").write_text("RuntimeError: CUDA out of memory\n")
    summary = jobs.read_experiment(str(exp))
    assert summary.best == pytest.approx(0.25) and summary.best_trial == "trial_a"
    assert summary.counts == {"ERROR": 1, "REPORTED": 1}
    assert summary.errors[0].message == "RuntimeError: CUDA out of memory"


def test_read_experiment_missing(tmp_path: Path) -> None:
    assert jobs.read_experiment(str(tmp_path / "nope")) is None
    exp, note = jobs._try_read_experiment({"storage": str(tmp_path), "name": "nope"})
    assert exp is None and "no experiment state" in note


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-tune")
    commands.register(p.add_subparsers(dest="command", required=True))
    return p


def test_register_adds_subcommands() -> None:
    p = _parser()
    a = p.parse_args(["submit", "c.yaml", "--address", "http://h:8265", "--searcher", "tpe", "--name", "n",
                      "--num-samples", "3", "--working-dir", "--token-file", "tok", "--set", "x=1",
                      "--search-args=--set y=2"])
    assert (a.func, a.config, a.address, a.searcher, a.name, a.num_samples, a.working_dir, a.token_file,
            a.set) == (commands.cmd_submit, "c.yaml", "http://h:8265", "tpe", "n", 3, True, "tok", ["x=1"])
    assert commands._search_args(a) == ("--set", "y=2")
    assert p.parse_args(["status"]).job_id is None
    assert p.parse_args(["status", "raysubmit_x", "--wait"]).wait is True
    assert p.parse_args(["logs", "j", "--follow"]).follow is True
    assert p.parse_args(["stop", "j"]).func is commands.cmd_stop
    assert p.parse_args(["jobs", "--json"]).func is commands.cmd_jobs


def test_main_cli_prints_one_error_line(tmp_path: Path) -> None:
    import subprocess

    bad = tmp_path / "bad.yaml"
    bad.write_text("search: [1, 2\n")
    proc = subprocess.run([sys.executable, "-m", "asr_tune", "submit", str(bad), "--address",
                           "http://127.0.0.1:9"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "invalid YAML" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
