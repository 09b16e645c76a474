"""Searcher comparison: every searcher on the same task, compute budget and seeds.

For each seed, random search's best val WER within the budget is the target; for every searcher
the benchmark reports the compute (trial-epochs, trial-seconds) and the trials it needed to reach
that target, as a ratio to random search's own compute, and its best val WER at the equal budget.

Modes:
  record  train every point of a grid for real, once, with ``asr-tune search`` (grid searcher);
          curves -> JSON. ``--task fsdd`` (default): the speaker-disjoint FSDD recipe
          (configs/fsdd_digits.yaml, ``make digits`` first), 48 points over optim.lr x
          model.num_layers x model.d_model x data.train_weight x features.vtlp, 400 steps each,
          reported every 20 steps (20 reports). ``--task synth``: the older synthetic-corpus grid.
          A killed recording resumes where it stopped when run again with the same --grid.
  replay  (default) a tabular benchmark: every searcher runs through real Ray Tune with the
          registry's own search_alg/scheduler (``build_search``), but its trainable reports the
          recorded curve of the sampled config (snapped to the grid) -- no training. Compute is
          counted in trial-epochs and recorded seconds.
  live    the same searches with real trainings of the recorded task (slow); the best model of
          each search (its best report's checkpoint) is then scored on the task's unseen test split.

Usage::

    python benchmarks/bench_searchers.py --help
    python benchmarks/bench_searchers.py --quick                        # < 5 min on 2 cores
    python benchmarks/bench_searchers.py --mode replay --seeds 5 --out results/searchers
    make digits && python benchmarks/bench_searchers.py --mode record     # ~40 min on 2 cores
    python benchmarks/bench_searchers.py --mode replay --seeds 10 --out benchmarks/results/searchers
    python benchmarks/bench_searchers.py --mode live --searchers random,asha,bohb --budget 60 --parallel 2

Writes ``OUT/searchers.json`` (per-run rows, per-searcher summary, grid diagnostics, machine info),
``OUT/searchers_best_vs_compute.png``, ``OUT/searchers_ratio.png`` and ``OUT/report_seed0/`` (the
``asr-tune report`` of seed 0's experiments); experiment folders go to ``OUT/experiments/``.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

try:  # imported from the repo root (tests) or run as a script (benchmarks/ is then on sys.path)
    from benchmarks.common import format_table, machine_info, machine_line, write_json
except ImportError:
    from common import format_table, machine_info, machine_line, write_json  # type: ignore

REPO = Path(__file__).resolve().parents[1]

SYNTH_GRID = REPO / "benchmarks" / "data" / "synth_grid.json"
FSDD_GRID = REPO / "benchmarks" / "data" / "fsdd_grid.json"
BASE_CONFIG = REPO / "configs" / "ci_search_tiny.yaml"
FSDD_CONFIG = REPO / "configs" / "fsdd_digits.yaml"
FULL_AXES = {"optim.lr": [0.001, 0.002, 0.004, 0.008], "model.num_layers": [1, 2, 3],
             "model.d_model": [32, 64]}
TINY_AXES = {"optim.lr": [0.002, 0.008], "model.num_layers": [1, 2], "model.d_model": [32]}
FSDD_AXES = {"optim.lr": [0.0015, 0.003, 0.006], "model.num_layers": [2, 3],
             "model.d_model": [64, 96], "data.train_weight": [0.2, 1.0],
             "features.vtlp": [0.0, 0.15]}
FSDD_OVERRIDES = {"trainer.max_steps": 400, "trainer.report_every_steps": 20,
                  "trainer.average_top_k": 0, "trainer.clean_steps": 40, "optim.warmup_steps": 40,
                  "trainer.threads": 1, "resources.cpus_per_worker": 1,
                  "trainer.output_dir": "runs/fsdd_grid"}
QUICK_SEARCHERS = ["random", "asha", "hyperband", "bohb", "tpe"]
TARGETS = {"asha": 0.2, "bohb": 0.2, "tpe": 0.5, "rl": 0.5}
HALVING = ("asha", "hyperband", "bohb")  # stop trials at rungs: they need curves that rank early


def task_overrides(tiny: bool) -> dict[str, Any]:
    """The recorded task: ci_search_tiny.yaml + a bigger synthetic corpus, small batches, no
    SpecAugment/dropout (so val WER leaves 100 % within a few epochs on CPU)."""
    n, epochs, root = (120, 5, "data/synth_bench_tiny") if tiny else (300, 12, "data/synth_bench")
    return {"data.train": f"{root}/train.jsonl", "data.dev": f"{root}/dev.jsonl",
            "data.test": f"{root}/test.jsonl", "data.synth_utterances": n, "data.batch_size": 4,
            "features.freq_masks": 0, "features.time_masks": 0, "model.dropout": 0.0,
            "optim.warmup_steps": 20, "trainer.max_epochs": epochs, "trainer.threads": 1,
            "resources.cpus_per_worker": 1}


def code_version() -> str:
    """``git describe`` of the checkout that recorded (``+dirty`` with uncommitted changes)."""
    import subprocess

    try:
        return subprocess.run(["git", "describe", "--always", "--dirty=+dirty"], cwd=REPO,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def record(grid_path: Path, tiny: bool, work: Path, command: str, task: str = "synth"):
    from asr_tune.tuning.replay import record_grid

    grid_path = grid_path.resolve()
    if task == "fsdd":
        config, axes, overrides = FSDD_CONFIG, FSDD_AXES, dict(FSDD_OVERRIDES)
        missing = [p for p in ("data/fsdd_digits/train.jsonl", "data/synth_digits/train.jsonl")
                   if not (REPO / p).is_file()]
        if missing:
            raise SystemExit(f"error: {', '.join(missing)} missing; run `make digits` first")
    else:
        config, axes, overrides = BASE_CONFIG, TINY_AXES if tiny else FULL_AXES, task_overrides(tiny)
    print(f"recording {task} {'tiny ' if tiny else ''}grid {axes} -> {grid_path} (real trainings)",
          flush=True)
    meta = {"command": command, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "produced_by": "benchmarks/bench_searchers.py --mode record", "task": task,
            "code_version": code_version(), "base_config": str(config.relative_to(REPO)),
            "task_overrides": overrides, "machine": machine_info(), "path": str(grid_path)}
    os.chdir(REPO)  # the configs' data paths are relative to the repository root
    grid = record_grid(config, axes, overrides, storage=work, name=grid_path.stem, meta=meta)
    grid.meta.update(path=str(grid_path))
    from asr_tune.report.compare import rung_diagnostics

    grid.meta["rank_correlation"] = rung_diagnostics(grid.points, "val_wer", grid.max_epochs,
                                                     reduction_factor=2.0)
    print(separation_line(grid.meta["rank_correlation"], "val_wer"), flush=True)
    grid.save(grid_path)
    print(f"wrote {grid_path}: {len(grid.points)} points x {grid.max_epochs} epochs "
          f"({grid.meta['record_wall_s']:.0f} s)", flush=True)
    return grid


def separation_line(diag: list[dict[str, Any]], metric: str) -> str:
    """Do the curves separate early? Spearman of each report's metric vs each point's final best."""
    return "rank correlation (Spearman) of %s at report k vs the final best, over the grid: " % metric + \
        ", ".join(f"k={d['epoch']}: " + ("n/a (all equal)" if d["spearman_vs_final"] is None
                                          else f"{d['spearman_vs_final']:.2f}") for d in diag)


def replayable(names: list[str]) -> tuple[list[str], dict[str, str]]:
    from asr_tune.tuning.replay import NOT_REPLAYABLE

    return [n for n in names if n not in NOT_REPLAYABLE], {n: NOT_REPLAYABLE[n] for n in names
                                                          if n in NOT_REPLAYABLE}


def run_all(grid, searchers: list[str], seeds: list[int], budget: int, work: Path, live: bool,
            parallel: int, metric: str, options: dict[str, Any] | None = None) -> dict[str, dict[int, Any]]:
    from asr_tune.report.experiments import load_experiment
    from asr_tune.tuning.replay import run_replay

    factory, resources, base = None, None, None
    if live:
        from ray import tune

        from asr_tune.tuning.trial import run_trial

        from asr_tune.training.run import ensure_corpus

        base = recorded_config(grid)
        from asr_tune.tuning.runner import _absolute_data_paths

        os.chdir(REPO)  # the recorded config's data paths are relative to the repository root
        base = _absolute_data_paths(base)  # trials run in their own folders: pin every path
        ensure_corpus(base)

        def factory(cfg):  # noqa: E306 - real trainings of the recorded task
            return tune.with_parameters(run_trial, base=cfg.to_dict())
        resources = {"cpu": 1.0}
    runs: dict[str, dict[int, Any]] = {}
    for seed in seeds:
        for name in searchers:
            t0 = time.perf_counter()
            work.mkdir(parents=True, exist_ok=True)
            with open(work / "tune_stdout.log", "a") as log, contextlib.redirect_stdout(log):
                d = run_replay(grid, name, seed=seed, budget_epochs=budget, storage=work,
                               name=f"{name}_seed{seed}", metric=metric, parallel=parallel,
                               options={name: (options or {})[name]} if name in (options or {}) else None,
                               base_config=base, trainable_factory=factory, resources=resources)
            exp = load_experiment(d)
            runs.setdefault(name, {})[seed] = exp
            print(f"  seed {seed} {name:9s} {len(exp.trials):3d} trials, best {metric} "
                  f"{exp.best_value:.2f} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return runs


def recorded_config(grid) -> Any:
    """The recorded task's base config: the grid's stored config (a recorded grid keeps the
    search's full base config), else the synthetic task's file + overrides."""
    from asr_tune.config import config_from_dict, load_config

    stored = grid.meta.get("base_config")
    if isinstance(stored, dict):
        return config_from_dict(stored, "recorded grid base config")
    return load_config(REPO / stored if stored else BASE_CONFIG,
                       grid.meta.get("task_overrides") or task_overrides(False))


def live_test_wer(exp_path: Path, test: str) -> dict[str, Any]:
    """A live search's best trial (lowest dev WER over all its reports), its checkpoint at that
    report, scored on the test split: what the search would hand a user."""
    from asr_tune.scoring import evaluate
    from asr_tune.tuning.folder import read_folder

    best = None
    for t in read_folder(exp_path).trials:
        if "val_wer" not in t.history or not len(t.history):
            continue
        row = t.history.loc[t.history["val_wer"].idxmin()]
        if best is None or row["val_wer"] < best[1]["val_wer"]:
            best = (t, row)
    if best is None:
        return {"test_wer": None}
    t, row = best
    it = int(row["training_iteration"])
    ckpt = Path(t.path) / f"checkpoint_{it - 1:06d}" / "checkpoint.ckpt"
    return {"trial": t.trial_id, "iteration": it, "val_wer": float(row["val_wer"]),
            "checkpoint": str(ckpt), "test_wer": evaluate(ckpt, test).wer}


def verdicts(summary: dict[str, Any], diag: list[dict[str, Any]], ref: dict[str, Any],
             grid, budget: int, metric: str, mt: dict[str, Any]) -> list[str]:
    """A line per target searcher (ratio to random's median best): met or not, and why not."""
    lines = []
    weak = [d for d in diag if d["spearman_vs_final"] is None or d["spearman_vs_final"] < 0.5]
    for name, target in TARGETS.items():
        s, m = summary.get(name), mt.get(name)
        if s is None or m is None:
            lines.append(f"{name}: not run")
            continue
        med = m["ratio_epochs"]
        head = (f"{name}: median {med:.2f}x random's trial-epochs to reach random's median best"
                if med is not None else f"{name}: reached random's median best on fewer than half "
                f"of {s['seeds']} seeds (median not defined)")
        if med is not None and med <= target:
            lines.append(f"{head} -> target <= {target}x MET")
            continue
        why = []
        if ref.get("epochs_to_target_median") is not None:
            why.append(f"random reached its best after a median {ref['epochs_to_target_median']:.0f} "
                       f"trial-epochs ({ref['trials_to_target_median']:.0f} trials) of a {budget} "
                       f"budget on a {len(grid.points)}-point grid, so there is little compute to save")
        if weak and name in HALVING:
            why.append("the early rungs cannot rank the configs (" + "; ".join(
                f"epoch {d['epoch']}: {metric} {d['min']:.1f}..{d['max']:.1f}, "
                + ("the same for every config" if d["spearman_vs_final"] is None else
                   f"Spearman vs final best {d['spearman_vs_final']:.2f}")
                for d in weak) + "), so successive halving stops configs at random there")
        if s["reached"] < s["seeds"]:
            why.append(f"not reached within the budget on {s['seeds'] - s['reached']} seed(s)")
        lines.append(f"{head} -> target <= {target}x NOT MET: " + "; ".join(why or ["see the plots"]))
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[2:]))
    p.add_argument("--mode", choices=["replay", "record", "live"], default="replay")
    p.add_argument("--quick", action="store_true",
                   help=f"CI-sized: {', '.join(QUICK_SEARCHERS)}; 3 seeds; replay (< 5 min)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--budget", type=int, default=0,
                   help="trial-epochs per search (default: half of the grid's total epochs)")
    p.add_argument("--searchers", default="", help="comma list (default: every replayable one)")
    p.add_argument("--grid", type=Path, default=None,
                   help=f"recorded grid JSON (default: {FSDD_GRID.relative_to(REPO)} for --task fsdd, "
                        f"{SYNTH_GRID.relative_to(REPO)} for --task synth)")
    p.add_argument("--task", choices=["fsdd", "synth"], default="fsdd",
                   help="which recorded task (default fsdd; replay falls back to synth when the "
                        "fsdd grid was not recorded)")
    p.add_argument("--tiny-grid", action="store_true", help="record: the tiny fallback grid")
    p.add_argument("--metric", default="val_wer", choices=["val_wer", "val_loss"])
    p.add_argument("--parallel", type=int, default=1,
                   help="trials running at once (default 1: replays are then reproducible for every "
                        "searcher but BOHB, whose KDE draws from numpy's global RNG)")
    p.add_argument("--options", default="",
                   help='searcher options as JSON, e.g. \'{"asha": {"grace_period": 8}}\' (default: '
                        "the registry's defaults)")
    p.add_argument("--out", type=Path, default=Path("results/searchers"))
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    logging.getLogger("hpbandster").setLevel(logging.ERROR)  # BOHB's KDE debug dumps
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="statsmodels")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    command = "python benchmarks/bench_searchers.py " + " ".join(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    out = args.out
    work = (out / "experiments").resolve()
    print(machine_line(), flush=True)
    if args.grid is None:
        fsdd = args.task == "fsdd" and (args.mode == "record" or FSDD_GRID.is_file())
        args.grid = FSDD_GRID if fsdd else SYNTH_GRID
    if args.mode == "record":
        record(args.grid, args.tiny_grid, work, command, task="synth" if args.tiny_grid else args.task)
        return 0
    from asr_tune.report.compare import compare_searchers, plot_comparison, rung_diagnostics
    from asr_tune.tuning.replay import load_grid
    from asr_tune.tuning.registry import searcher_names

    if args.grid.is_file():
        grid = load_grid(args.grid)
    elif args.quick:
        print(f"{args.grid} missing: recording the tiny fallback grid first", flush=True)
        grid = record(out / "tiny_grid.json", True, work / "record", command)
    else:
        print(f"error: {args.grid} missing; run --mode record first", file=sys.stderr)
        return 2
    if grid.spread(args.metric) == 0 and args.metric == "val_wer":
        print("note: val_wer is the same for every grid point; using val_loss", flush=True)
        args.metric = "val_loss"
    names = args.searchers.split(",") if args.searchers else (
        QUICK_SEARCHERS if args.quick else searcher_names())
    names, skipped = replayable(names)
    if "random" not in names:
        names.insert(0, "random")
    if args.seeds < 3 and not args.quick:
        print(f"note: --seeds {args.seeds} raised to 3 (the comparison needs at least 3 seeds)")
    seeds = list(range(max(3, args.seeds) if not args.quick else 3))
    budget = args.budget or grid.total_epochs() // 2
    shutil.rmtree(work / "replay", ignore_errors=True)
    print(f"{args.mode}: {len(grid.points)}-point grid x {grid.max_epochs} epochs "
          f"({grid.meta.get('path', args.grid)}), budget {budget} trial-epochs, seeds {seeds}, "
          f"{args.parallel} trials at once, metric {args.metric}", flush=True)
    import json

    options = json.loads(args.options) if args.options else {}
    runs = run_all(grid, names, seeds, budget, work / "replay", args.mode == "live", args.parallel,
                   args.metric, options)
    live_tests: dict[str, dict[int, Any]] = {}
    if args.mode == "live":  # the best model of each live search, scored on the unseen test split
        test = str(REPO / recorded_config(grid).data.test)
        for name, by_seed in runs.items():
            for seed, exp in by_seed.items():
                live_tests.setdefault(name, {})[seed] = r = live_test_wer(Path(exp.path), test)
                print(f"  live {name:9s} seed {seed}: best dev {r.get('val_wer', float('nan')):.2f} "
                      f"-> test WER {r['test_wer']:.2f} ({test})", flush=True)
    optimum = grid.optimum(args.metric)
    result = compare_searchers(runs, budget, optimum=optimum)
    diag = rung_diagnostics(grid.points, args.metric, grid.max_epochs)
    summary = result["summary"]
    figures = plot_comparison(runs, result, out, optimum=optimum, targets={"asha/bohb": 0.2,
                                                                           "tpe/rl": 0.5})
    from asr_tune.report.summary import make_report

    rep = make_report([str(runs[n][0].path) for n in names if 0 in runs[n]], out / "report_seed0")
    figures.update({f"report_{k}": v for k, v in rep["figures"].items()})
    rows = [{"searcher": n, "reached": f"{s['reached']}/{s['seeds']}",
             "x random epochs": s["ratio_epochs_median"], "x random s": s["ratio_compute_s_median"],
             "epochs to target": s["epochs_to_target_median"],
             "trials to target": s["trials_to_target_median"],
             f"best @{budget}": s["best_at_budget_mean"], "+-": s["best_at_budget_std"],
             "trials @budget": s["trials_at_budget_mean"], "epochs/trial": s["epochs_per_trial_mean"]}
            for n, s in summary.items()]
    cols = list(rows[0])
    table = format_table(rows, cols, title=(
        f"compute to reach random search's best {args.metric} (median over {len(seeds)} seeds; "
        f"x random = searcher's / random's own compute to that value) and best at equal budget"))
    mt = result["median_target"]

    def ci(v: Any) -> str:
        return "-" if not v else "[" + ", ".join("inf" if x is None else f"{x:.2f}" for x in v) + "]"

    mrows = [{"searcher": n, "x random (median)": m["ratio_epochs"], "95% CI": ci(m["ratio_epochs_ci"]),
              **{f"best @{p}%": m[f"best_at_{p}pct"] for p in (25, 50, 100)},
              "CI @100%": ci(m["best_at_100pct_ci"]),
              "optimum hits": f"{m.get('reached_optimum', 0)}/{len(seeds)}"} for n, m in mt.items()]
    table2 = format_table(mrows, list(mrows[0]), title=(
        f"against random's median best ({mt['random']['target']:.2f} {args.metric}; random needs a "
        f"median {mt['random']['ref_epochs_to_target']:.0f} trial-epochs): trial-epochs to reach it "
        f"(median over seeds, x random's median; bootstrap 95 % CI), best at 25/50/100 % of the "
        f"{budget}-epoch budget, seeds reaching the grid optimum {optimum:.2f}"))
    lines = verdicts(summary, diag, summary["random"], grid, budget, args.metric, mt)
    lines.append("compute: trial-epochs are exact; 'x random s' uses the seconds recorded per epoch"
                 + (" (the grid was recorded on a shared machine under varying load)"
                    if args.mode != "live" else ""))
    wall = time.perf_counter() - start
    print("\n" + table, flush=True)
    print("\n" + table2, flush=True)
    print(separation_line(rung_diagnostics(grid.points, args.metric, grid.max_epochs,
                                           reduction_factor=2.0), args.metric))
    print(f"grid optimum {args.metric} {optimum:.2f}; skipped: "
          + ("; ".join(f"{k} ({v})" for k, v in skipped.items()) or "none"))
    print("\n".join(lines))
    print(f"wall {wall:.0f} s; figures: {', '.join(figures.values())}")
    write_json(out / "searchers.json", {
        "command": command, "mode": args.mode, "machine": machine_info(), "wall_s": wall,
        "grid": {"path": str(args.grid), "points": len(grid.points), "max_epochs": grid.max_epochs,
                 "axes": grid.axes, "optimum": optimum, "meta": {k: v for k, v in grid.meta.items()
                                                                  if k != "base_config"}},
        "budget_epochs": budget, "seeds": seeds, "metric": args.metric, "searchers": names,
        "options": options, "live_test": live_tests,
        "skipped": skipped, "table": rows, "median_target_table": mrows, "verdicts": lines,
        "median_target": mt, "rung_diagnostics": diag,
        "summary": summary, "runs": result["runs"], "figures": figures})
    print(f"wrote {out / 'searchers.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
