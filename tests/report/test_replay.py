"""Replay bookkeeping: a searcher decides the same on replayed curves as on live trials.

A deterministic "live" trainable computes a learning curve from the sampled hyperparameters; the
"recorded" grid holds the same curves. With a fixed seed and one trial at a time, random search,
TPE and ASHA (all deterministic then) must suggest the same configs in the same order and stop the
same trials at the same epochs on both. Plus fast unit tests of snapping, spaces and comparison.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest

from asr_tune.report.compare import compare_searchers, reach, rung_diagnostics
from asr_tune.report.experiments import load_experiment
from asr_tune.tuning.replay import (NOT_REPLAYABLE, RecordedGrid, curve_reporter, load_grid,
                                    nearest, replay_space, run_replay)

AXES = {"optim.lr": [0.0003, 0.001, 0.003, 0.01], "model.num_layers": [1, 2, 3]}
EPOCHS = 6


def live_curve(ov: dict[str, Any]) -> list[dict[str, float]]:
    """The 'training': val WER falls towards a floor set by lr and depth (distinct per point)."""
    q = math.exp(-((math.log10(ov["optim.lr"]) + 2.5) ** 2))
    floor = 100.0 - 40.0 * q - 4.0 * ov["model.num_layers"]
    speed = 0.3 + 0.4 * q + 0.05 * ov["model.num_layers"]
    return [{"epoch": e, "val_wer": floor + (100.0 - floor) * math.exp(-speed * e),
             "time_this_iter_s": 0.5 * ov["model.num_layers"]} for e in range(1, EPOCHS + 1)]


def make_grid() -> RecordedGrid:
    points = [{"config": dict(zip(AXES, vals)), "curve": live_curve(dict(zip(AXES, vals)))}
              for vals in itertools.product(*AXES.values())]
    return RecordedGrid(axes=AXES, max_epochs=EPOCHS, points=points)


def _decisions(exp_dir: Path) -> list[tuple[tuple, int]]:
    exp = load_experiment(exp_dir)
    return [(tuple(sorted(t.config.items())), t.epochs) for t in exp.trials]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("searcher,options", [
    ("random", {}), ("tpe", {"tpe": {"n_initial_points": 3}}),
    ("asha", {"asha": {"grace_period": 1, "reduction_factor": 2}})])
def test_replay_decides_like_live(searcher: str, options: dict, tmp_path: Path, ray_local: Any) -> None:
    grid = make_grid()
    kw = dict(seed=7, budget_epochs=0, num_samples=7, max_concurrent=1, parallel=1, options=options)
    live = run_replay(grid, searcher, storage=tmp_path / "live", **kw,
                      trainable_factory=lambda cfg: curve_reporter(live_curve, ("val_wer",)))
    replay = run_replay(grid, searcher, storage=tmp_path / "replay", **kw)
    got_live, got_replay = _decisions(live), _decisions(replay)
    assert len(got_live) == 7
    assert got_replay == got_live
    if searcher == "asha":
        assert any(epochs < EPOCHS for _, epochs in got_live), "ASHA stopped nothing"
    exp = load_experiment(replay)
    ev = exp.events()
    assert ev["cum_epochs"].iloc[-1] == sum(e for _, e in got_replay)
    recorded = sum(r["time_this_iter_s"] for t in exp.trials
                   for r in grid.curve(t.config)[: t.epochs])
    assert ev["cum_compute_s"].iloc[-1] == pytest.approx(recorded)  # recorded seconds, not wall


def test_snap_and_spaces() -> None:
    from asr_tune.config import SearchConfig
    from asr_tune.tuning.registry import build_search, searcher_names

    grid = make_grid()
    assert grid.scales == {"optim.lr": "log", "model.num_layers": "linear"}
    assert nearest(AXES["optim.lr"], 0.0017, "log") == 0.001  # log-nearer to 1e-3 than to 3e-3
    assert nearest(AXES["optim.lr"], 0.0019, "log") == 0.003
    assert grid.snap({"optim.lr": 0.02, "model.num_layers": 2.6}) == {"optim.lr": 0.01,
                                                                       "model.num_layers": 3}
    assert grid.curve({"optim.lr": 0.001, "model.num_layers": 1}) == live_curve(
        {"optim.lr": 0.001, "model.num_layers": 1})
    for name in searcher_names():
        if name in NOT_REPLAYABLE:
            with pytest.raises(ValueError):
                replay_space(grid, name)
            continue
        space = replay_space(grid, name)  # every other searcher accepts its replay space
        build_search(SearchConfig(searcher=name, space=space, num_samples=4), max_t=EPOCHS)
    lo_hi = replay_space(grid, "bayesopt")["optim.lr"]
    assert lo_hi["type"] == "loguniform" and nearest(AXES["optim.lr"], lo_hi["low"], "log") == 0.0003


def test_grid_roundtrip_and_diagnostics(tmp_path: Path) -> None:
    grid = make_grid()
    grid.meta["command"] = "test"
    back = load_grid(grid.save(tmp_path / "g.json"))
    assert back.points == grid.points and back.axes == grid.axes and back.meta["command"] == "test"
    assert back.optimum("val_wer") == min(r["val_wer"] for p in grid.points for r in p["curve"])
    diag = rung_diagnostics(grid.points, "val_wer", EPOCHS)
    assert [d["epoch"] for d in diag] == [1, 3] and all(d["distinct_values"] > 1 for d in diag)


def test_compare_bookkeeping(tmp_path: Path) -> None:
    """Ratios on hand-made experiments: 'fast' reaches random's best with half the epochs."""
    import json

    def exp(name: str, trials: list[list[float]]) -> Path:
        root = tmp_path / name
        for i, wers in enumerate(trials):
            d = root / f"t_abcde_{i:05d}_{i}_x"
            d.mkdir(parents=True)
            (d / "result.json").write_text("".join(json.dumps(
                {"val_wer": w, "training_iteration": e, "trial_id": f"abcde_{i:05d}",
                 "recorded_time_this_iter_s": 1.0, "report_time": 100 * i + e}) + "\n"
                for e, w in enumerate(wers, 1)))
        (root / "asr_tune_search.json").write_text(json.dumps(
            {"name": name, "config": {"trainer": {"max_epochs": 2}, "search": {"searcher": name}}}))
        return root

    rnd = load_experiment(exp("random", [[90, 80], [70, 60], [75, 65]]))
    fast = load_experiment(exp("fast", [[95], [72, 60], [99]]))
    ev = rnd.events()
    assert reach(ev, 60.0) == {"epochs": 4, "compute_s": 4.0, "trials": 2}
    res = compare_searchers({"random": {0: rnd}, "fast": {0: fast}}, budget_epochs=5)
    row = next(r for r in res["runs"] if r["searcher"] == "fast")
    assert (row["epochs_to_target"], row["trials_to_target"], row["ratio_epochs"]) == (3, 2, 0.75)
    assert row["best_at_budget"] == 60 and row["trials_at_budget"] == 3
    assert res["summary"]["fast"]["stopped_early_mean"] == 1  # trial 0; trial 2 still "running"

    # across seeds: random's median best (seeds 60, 50, 70 -> 60) is the common target
    rnd1 = load_experiment(exp("random1", [[55, 50]]))
    rnd2 = load_experiment(exp("random2", [[80, 70], [75, 72]]))
    slow = load_experiment(exp("slow", [[99, 98], [97, 96], [61, 60]]))
    res = compare_searchers({"random": {0: rnd, 1: rnd1, 2: rnd2}, "fast": {0: fast, 1: fast, 2: fast},
                             "slow": {0: slow, 1: slow, 2: slow}}, budget_epochs=6, optimum=50.0)
    mt = res["median_target"]
    assert mt["random"]["target"] == 60 and mt["random"]["ref_epochs_to_target"] == 4  # 4, 2, inf
    assert mt["fast"]["ratio_epochs"] == 0.75 and mt["slow"]["ratio_epochs"] == 1.5
    assert mt["random"]["reached_optimum"] == 1 and mt["fast"]["reached_optimum"] == 0
    assert (mt["fast"]["best_at_25pct"], mt["fast"]["best_at_50pct"]) == (72, 60)  # 2 and 3 epochs
    lo, hi = mt["random"]["best_at_100pct_ci"]
    assert 50 <= lo <= mt["random"]["best_at_100pct"] <= hi <= 70


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_budget_stops_at_exact_trial_epochs(tmp_path: Path, ray_local: Any) -> None:
    """The budget counts distinct reported epochs (a finished trial's repeated last result is not
    counted twice); one trial at a time, the search stops exactly at the budget."""
    exp_dir = run_replay(make_grid(), "random", seed=1, budget_epochs=20, storage=tmp_path,
                         parallel=1, max_concurrent=1)
    ev = load_experiment(exp_dir).events()
    assert ev["cum_epochs"].iloc[-1] == 20
    assert ev.groupby("trial_id")["training_iteration"].max().tolist()[:3] == [EPOCHS] * 3
