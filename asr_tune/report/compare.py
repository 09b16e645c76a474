"""Compare searchers on the same task, budget and seeds (events of ``Experiment`` folders).

For every seed, the reference searcher's (random search's) best value within the budget is the
target; for every searcher: the compute (trial-epochs, trial-seconds) and the number of trials it
needed to first reach that target, and its own best value at the equal budget. Ratios are
compute-to-target divided by the reference's own compute to reach its best.

Across seeds (``median_target``): the reference's *median* best at the budget is one common target;
each run's trial-epochs to reach it are divided by the median of the reference's own (an unreached
run counts as infinite). Also per searcher: the best value at 25/50/100 % of the budget, how often
the run reached the task's optimum (``optimum``), and 95 % bootstrap intervals (seeded, so the
report is reproducible) of the means and of the median ratio.

Usage::

    from asr_tune.report.compare import compare_searchers, plot_comparison
    res = compare_searchers({"random": {0: exp_r0, 1: exp_r1}, "asha": {0: exp_a0, 1: exp_a1}},
                            budget_epochs=144)
    res["summary"]["asha"]["ratio_epochs_median"]
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from asr_tune.report.experiments import Experiment

_TOL = 1e-9


def truncated_events(exp: Experiment, budget_epochs: int) -> pd.DataFrame:
    ev = exp.events()
    return ev[ev["cum_epochs"] <= budget_epochs].reset_index(drop=True) if budget_epochs else ev


def reach(ev: pd.DataFrame, target: float, mode: str = "min") -> dict[str, Any] | None:
    """Where the best-so-far first reaches ``target`` (epochs, seconds, trials), else ``None``."""
    if not len(ev) or target is None or not math.isfinite(target):
        return None
    ok = ev["best_so_far"] <= target + _TOL if mode == "min" else ev["best_so_far"] >= target - _TOL
    if not ok.any():
        return None
    row = ev[ok].iloc[0]
    return {"epochs": int(row["cum_epochs"]), "compute_s": float(row["cum_compute_s"]),
            "trials": int(row["trials_started"])}


def run_stats(exp: Experiment, budget_epochs: int) -> dict[str, Any]:
    """One run at the budget: best value, compute used, trials started, epochs per trial."""
    ev = truncated_events(exp, budget_epochs)
    if not len(ev):
        return {"best": None, "epochs": 0, "compute_s": 0.0, "trials": 0, "epochs_per_trial": None,
                "stopped_early": 0}
    per_trial = ev.groupby("trial_id")["training_iteration"].max()
    pos = pd.Series(range(len(ev)), index=ev.index)
    last_start = int(pos[~ev["trial_id"].duplicated()].max())
    last_event = pos.groupby(ev["trial_id"]).max()
    finished = last_event[last_event < last_start].index  # a later trial started after its end
    stopped = int((per_trial.loc[finished] < exp.max_epochs).sum())
    return {"best": float(ev["best_so_far"].iloc[-1]), "epochs": int(ev["cum_epochs"].iloc[-1]),
            "compute_s": float(ev["cum_compute_s"].iloc[-1]), "trials": int(len(per_trial)),
            "epochs_per_trial": float(per_trial.mean()), "stopped_early": stopped}


def _median(xs: list[float]) -> float | None:
    return float(statistics.median(xs)) if xs else None


FRACTIONS = (0.25, 0.5, 1.0)


def best_at(exp: Experiment, epochs: int) -> float | None:
    ev = truncated_events(exp, epochs)
    return float(ev["best_so_far"].iloc[-1]) if len(ev) else None


def bootstrap_ci(values: list[float], stat: Any = statistics.fmean, n: int = 2000,
                 seed: int = 0) -> tuple[float, float] | None:
    """95 % percentile bootstrap interval of ``stat`` over ``values`` (inf allowed for medians)."""
    import numpy as np

    if len(values) < 2:
        return None
    rng = np.random.default_rng(seed)
    arr = np.asarray(values, dtype=float)
    draws = sorted(float(stat(list(arr[rng.integers(0, len(arr), len(arr))]))) for _ in range(n))
    return draws[int(0.025 * n)], draws[int(0.975 * n) - 1]


def median_target(runs: Mapping[str, Mapping[int, Experiment]], budget_epochs: int,
                  reference: str, optimum: float | None) -> dict[str, dict[str, Any]]:
    """Per searcher, against the reference's median best: ratio of trial-epochs to reach it (median,
    CI), best at 25/50/100 % of the budget (mean, CI) and optimum hits."""
    ref_bests = [b for b in (best_at(e, budget_epochs) for e in runs[reference].values()) if b is not None]
    if not ref_bests:
        return {}
    target = float(statistics.median(ref_bests))

    def epochs_to(exp: Experiment) -> float:
        r = reach(truncated_events(exp, budget_epochs), target, exp.mode)
        return float(r["epochs"]) if r else math.inf

    ref_epochs = float(statistics.median(epochs_to(e) for e in runs[reference].values()))
    out = {}
    for name, by_seed in runs.items():
        exps = [by_seed[k] for k in sorted(by_seed)]
        ratios = [epochs_to(e) / ref_epochs for e in exps]
        med = float(statistics.median(ratios))
        ci = bootstrap_ci(ratios, statistics.median)
        row: dict[str, Any] = {"target": target, "ref_epochs_to_target": ref_epochs,
                               "ratio_epochs": med if math.isfinite(med) else None,
                               "ratio_epochs_ci": [c if math.isfinite(c) else None for c in ci] if ci else None,
                               "ratio_epochs_per_seed": [r if math.isfinite(r) else None for r in ratios]}
        for f in FRACTIONS:
            vals = [b for b in (best_at(e, int(round(f * budget_epochs))) for e in exps) if b is not None]
            key = f"best_at_{int(f * 100)}pct"
            row[key] = statistics.fmean(vals) if vals else None
            row[key + "_ci"] = bootstrap_ci(vals)
        if optimum is not None:
            row["reached_optimum"] = sum((best_at(e, budget_epochs) or math.inf) <= optimum + _TOL
                                         for e in exps)
        out[name] = row
    return out


def compare_searchers(runs: Mapping[str, Mapping[int, Experiment]], budget_epochs: int,
                      reference: str = "random", optimum: float | None = None) -> dict[str, Any]:
    """Per-run rows, a per-searcher summary and the across-seeds comparison (module docstring)."""
    if reference not in runs:
        raise ValueError(f"compare: the reference searcher '{reference}' was not run")
    rows: list[dict[str, Any]] = []
    for seed, ref_exp in sorted(runs[reference].items()):
        ref_ev = truncated_events(ref_exp, budget_epochs)
        ref = run_stats(ref_exp, budget_epochs)
        target = ref["best"]
        ref_reach = reach(ref_ev, target, ref_exp.mode) if target is not None else None
        for name, by_seed in runs.items():
            if seed not in by_seed:
                continue
            exp = by_seed[seed]
            st = run_stats(exp, budget_epochs)
            r = reach(truncated_events(exp, budget_epochs), target, exp.mode) if target is not None \
                else None
            row = {"searcher": name, "seed": seed, "target": target, "best_at_budget": st["best"],
                   "epochs_used": st["epochs"], "compute_s_used": st["compute_s"],
                   "trials_at_budget": st["trials"], "epochs_per_trial": st["epochs_per_trial"],
                   "stopped_early": st["stopped_early"], "reached": r is not None,
                   "epochs_to_target": r and r["epochs"], "compute_s_to_target": r and r["compute_s"],
                   "trials_to_target": r and r["trials"],
                   "ref_epochs_to_target": ref_reach and ref_reach["epochs"],
                   "ref_compute_s_to_target": ref_reach and ref_reach["compute_s"],
                   "ref_trials_to_target": ref_reach and ref_reach["trials"],
                   "experiment": str(exp.path)}
            row["ratio_epochs"] = (r["epochs"] / ref_reach["epochs"]) if r and ref_reach else None
            row["ratio_compute_s"] = (r["compute_s"] / ref_reach["compute_s"]
                                      if r and ref_reach and ref_reach["compute_s"] > 0 else None)
            rows.append(row)
    return {"reference": reference, "budget_epochs": budget_epochs, "runs": rows,
            "summary": summarize(rows),
            "median_target": median_target(runs, budget_epochs, reference, optimum)}


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per searcher: seeds reached, median ratios (an unreached seed counts as infinite), means."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["searcher"] for r in rows):
        rs = [r for r in rows if r["searcher"] == name]
        n = len(rs)

        def med_ratio(key: str) -> float | None:
            vals = [r[key] if r[key] is not None else math.inf for r in rs]
            m = _median(vals)
            return None if m is None or not math.isfinite(m) else m

        bests = [r["best_at_budget"] for r in rs if r["best_at_budget"] is not None]
        out[name] = {
            "seeds": n, "reached": sum(r["reached"] for r in rs),
            "ratio_epochs_median": med_ratio("ratio_epochs"),
            "ratio_compute_s_median": med_ratio("ratio_compute_s"),
            "ratio_epochs_per_seed": [r["ratio_epochs"] for r in rs],
            "epochs_to_target_median": _median([r["epochs_to_target"] for r in rs if r["reached"]]),
            "trials_to_target_median": _median([r["trials_to_target"] for r in rs if r["reached"]]),
            "best_at_budget_mean": statistics.fmean(bests) if bests else None,
            "best_at_budget_std": statistics.pstdev(bests) if len(bests) > 1 else 0.0,
            "trials_at_budget_mean": statistics.fmean(r["trials_at_budget"] for r in rs),
            "epochs_per_trial_mean": statistics.fmean(r["epochs_per_trial"] or 0.0 for r in rs),
            "stopped_early_mean": statistics.fmean(r["stopped_early"] for r in rs)}
    return out


def rung_diagnostics(points: list[dict[str, Any]], metric: str, max_epochs: int,
                     grace_period: int = 1, reduction_factor: float = 3.0) -> list[dict[str, Any]]:
    """How well the metric at each ASHA rung predicts the final ranking on a recorded grid:
    spread of the metric at the rung and Spearman correlation with each point's best value."""
    finals = []
    for p in points:
        vals = [r.get(metric) for r in p["curve"] if isinstance(r.get(metric), (int, float))]
        finals.append(min(vals) if vals else math.nan)
    out, rung = [], float(grace_period)
    while rung < max_epochs:
        e = int(rung)
        at = [p["curve"][e - 1].get(metric) if len(p["curve"]) >= e else math.nan for p in points]
        s = pd.Series(at, dtype=float)
        corr = s.corr(pd.Series(finals, dtype=float), method="spearman") if s.nunique() > 1 else math.nan
        out.append({"epoch": e, "min": float(s.min()), "max": float(s.max()),
                    "distinct_values": int(s.nunique()),
                    "spearman_vs_final": None if math.isnan(corr) else float(corr)})
        rung *= reduction_factor
    return out


def plot_comparison(runs: Mapping[str, Mapping[int, Experiment]], result: dict[str, Any],
                    out: str | Path, optimum: float | None = None,
                    targets: Mapping[str, float] | None = None) -> dict[str, str]:
    """``searchers_best_vs_compute.png`` (median over seeds, min-max band, vs trial-epochs and
    trial-seconds) and ``searchers_ratio.png`` (compute to reach the reference's best)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    budget, ref = result["budget_epochs"], result["reference"]
    cmap = colormaps["tab10"]
    fig = Figure(figsize=(13, 5), dpi=120, layout="constrained")
    axes = fig.subplots(1, 2)
    metric = next(iter(next(iter(runs.values())).values())).metric
    for k, (name, by_seed) in enumerate(runs.items()):
        for ax, x in zip(axes, ("cum_epochs", "cum_compute_s")):
            curves = [truncated_events(e, budget)[[x, "best_so_far"]] for e in by_seed.values()]
            curves = [c for c in curves if len(c)]
            if not curves:
                continue
            grid = sorted({v for c in curves for v in c[x]})
            ys = pd.DataFrame({i: c.set_index(x)["best_so_far"].groupby(level=0).last()
                               .reindex(grid).ffill() for i, c in enumerate(curves)})
            lw = 2.6 if name == ref else 1.6
            ax.step(grid, ys.median(axis=1), where="post", color=cmap(k % 10), lw=lw,
                    label=f"{name} ({len(curves)} seeds)")
            ax.fill_between(grid, ys.min(axis=1), ys.max(axis=1), step="post", color=cmap(k % 10),
                            alpha=0.12)
    for ax, xl in zip(axes, ("cumulative trial-epochs", "cumulative recorded trial-seconds")):
        if optimum is not None:
            ax.axhline(optimum, color="k", ls=":", lw=1, label=f"grid optimum {optimum:.2f}")
        ax.set_xlabel(xl)
        ax.set_ylabel(f"best {metric} so far (median over seeds, band = min..max)")
        ax.set_title(f"best {metric} so far vs {xl}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"searchers on the same task: budget {budget} trial-epochs per search, "
                 f"{max(len(v) for v in runs.values())} seeds")
    p1 = out / "searchers_best_vs_compute.png"
    fig.savefig(p1)
    fig2 = Figure(figsize=(9, 4.5), dpi=120, layout="constrained")
    ax = fig2.subplots()
    mt = result.get("median_target") or {}
    names = list(result["summary"])

    def ratios(name: str) -> tuple[list[float | None], float | None]:
        if name in mt:  # against the reference's median best (one target for every seed)
            return mt[name]["ratio_epochs_per_seed"], mt[name]["ratio_epochs"]
        return result["summary"][name]["ratio_epochs_per_seed"], result["summary"][name]["ratio_epochs_median"]

    reached = [v for n in names for v in ratios(n)[0] if v is not None]
    top = max(reached + [1.2]) * 1.1  # where the unreached seeds are drawn
    for i, name in enumerate(names):
        vals, med = ratios(name)
        ax.bar(i, med if med is not None else 0.0, color=cmap(i % 10), alpha=0.6)
        ok = [v for v in vals if v is not None]
        ax.scatter([i] * len(ok), ok, color="k", s=14, zorder=3)
        missed = len(vals) - len(ok)
        if missed:
            ax.scatter([i], [top], marker="x", color="r", s=30, zorder=3)
            ax.text(i, top, f"  {missed} not reached", color="r", fontsize=7, va="center")
        if med is None:
            ax.text(i, 0.02, "median:\nnot reached", ha="center", fontsize=7, color="r")
    for name, t in (targets or {}).items():
        ax.axhline(t, color="tab:red", ls="--", lw=1)
        ax.text(-0.45, t, f"target {name}: {t}x", color="tab:red", fontsize=8, va="bottom",
                ha="left")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(names)), names, rotation=20)
    what = f"{ref}'s median best" if mt else f"{ref}'s best"
    ax.set_ylabel(f"trial-epochs to reach {what} / {ref}'s " + ("median" if mt else "own"))
    ax.set_title(f"compute to reach {what} {metric} (bar: median over seeds; dots: "
                 "seeds; red x: seeds that never reached it)", fontsize=9)
    ax.set_ylim(0, top * 1.1)
    ax.grid(axis="y", alpha=0.3)
    p2 = out / "searchers_ratio.png"
    fig2.savefig(p2)
    return {"best_vs_compute": str(p1), "ratio": str(p2)}
