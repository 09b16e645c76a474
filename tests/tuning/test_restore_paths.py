"""Restores on the path real trials take: the real trial function (``run_trial``, checkpoints saved
inside the fit loop) under Hyperband's and BOHB's pause-and-resume and a synchronous PBT exploit.

Checked from what Tune recorded (every trial's ``result.json``):
- every report carries ``val_wer``; reported iterations continue without gaps or repeats;
- a resumed trial starts from the weights of its own last report (``restored_hash`` of its first
  report after the pause == ``weights_hash`` of its report before it);
- an exploited trial starts from a donor's reported weights, and the mutated lr is the one in effect.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from asr_tune.config import load_config

TINY = Path(__file__).resolve().parents[2] / "configs" / "ci_search_tiny.yaml"
pytestmark = pytest.mark.slow


def rows_by_trial(exp_dir: Path) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for res in exp_dir.glob("*/result.json"):
        rows = [json.loads(line) for line in res.read_text().splitlines() if line.strip()]
        out[res.parent.name] = rows
    return out


def search(corpus: Path, tmp_path: Path, searcher: str, **extra: Any) -> dict[str, list[dict[str, Any]]]:
    from asr_tune.tuning.runner import search as run_search

    cfg = load_config(TINY, {
        "data.train": str(corpus / "train.jsonl"), "data.dev": str(corpus / "dev.jsonl"),
        "data.test": str(corpus / "test.jsonl"), "search.storage": str(tmp_path / "s"),
        "search.name": searcher, "search.searcher": searcher, "search.evaluate_best_on_test": False,
        "trainer.output_dir": str(tmp_path / "out"), "model.num_layers": 1, **extra})
    import ray

    try:
        res = run_search(cfg)
    finally:
        ray.shutdown()  # search() leaves its local Ray running; later modules start their own
    return rows_by_trial(Path(res.experiment_dir))


def lr_of(row: dict[str, Any]) -> float:
    from asr_tune.space_spec import trial_overrides

    return float(trial_overrides(row["config"])["optim.lr"])


def assert_contiguous_reports(trials: dict[str, list[dict[str, Any]]]) -> None:
    assert trials
    for name, rows in trials.items():
        assert all("val_wer" in r for r in rows), name
        its = [r["training_iteration"] for r in rows]
        assert its == list(range(1, len(its) + 1)), f"{name}: iterations {its}"
        steps = [r["global_step"] for r in rows]
        assert steps == sorted(set(steps)), f"{name}: global steps repeat or go back: {steps}"


def restores(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(last report before, first report after) of every restore: where ``restored_hash`` (constant
    over the reports of one run of the trial function) changes."""
    return [(b, a) for b, a in zip(rows, rows[1:]) if a["restored_hash"] != b["restored_hash"]]


@pytest.mark.parametrize("searcher, samples, epochs, options, cap", [
    # default cap (2 on 2 cores): red before search() let HyperBand create every trial up front, as
    # a bracket (here 9 trials) never filled and HyperBand paused and stopped nothing
    ("hyperband", 9, 9, {"reduction_factor": 3}, 0),
    ("bohb", 4, 4, {"reduction_factor": 2}, 0),
])
def test_pause_resume_continues_from_own_weights(searcher: str, samples: int, epochs: int,
                                                 options: dict, cap: int, corpus: Path,
                                                 tmp_path: Path) -> None:
    trials = search(corpus, tmp_path, searcher, **{
        "search.num_samples": samples, "trainer.max_epochs": epochs,
        "search.options": {searcher: options}, "resources.max_concurrent_trials": cap,
        "search.space": {"optim.lr": {"type": "loguniform", "low": 5e-4, "high": 5e-3}}})
    assert_contiguous_reports(trials)
    resumed = 0
    for name, rows in trials.items():
        assert not rows[0]["restored_hash"], name  # a fresh start
        for before, after in restores(rows):
            assert after["restored_hash"] == before["weights_hash"], name
            resumed += 1
    assert resumed, f"{searcher} paused no trial: the test did not exercise a restore"


def test_pbt_exploit_loads_donor_weights_and_mutated_lr(corpus: Path, tmp_path: Path) -> None:
    trials = search(corpus, tmp_path, "pbt", **{
        "search.num_samples": 2, "trainer.max_epochs": 4, "resources.max_concurrent_trials": 2,
        "optim.schedule": "constant", "optim.warmup_steps": 1,
        "search.options": {"pbt": {"perturbation_interval": 1, "synch": True,
                                   "resample_probability": 0.0, "quantile_fraction": 0.5}},
        "search.space": {"optim.lr": {"type": "loguniform", "low": 5e-4, "high": 5e-3}}})
    assert_contiguous_reports(trials)
    reported = {r["weights_hash"]: (name, r) for name, rows in trials.items() for r in rows}
    exploits = 0
    for name, rows in trials.items():
        for before, after in restores(rows):
            h = after["restored_hash"]
            if h == before["weights_hash"]:
                continue  # a restore of its own weights
            donor, row = reported[h]  # KeyError: started from weights nobody reported
            it = row["training_iteration"]
            assert donor != name and it == before["training_iteration"], (name, donor, it)
            exploits += 1
            # the lr in effect is the recipient's new config (the donor's, perturbed), not the
            # donor's lr that came with its optimiser state
            assert after["lr"] == pytest.approx(lr_of(after), rel=1e-6)
            assert lr_of(after) != pytest.approx(row["lr"], rel=1e-3)
    assert exploits, "PBT exploited no trial: the test did not exercise an exploit"
