"""``make_report``: tables (CSV/JSON) + figures (PNG) for one or several experiment folders.

Files written under ``out``::

    summary.csv / summary.json   one row per experiment: searcher, trials, stopped early,
                                 trial-epochs, compute, best metric, when it was reached, best config
    trials.csv / trials.json     one row per trial of every experiment
    int8.csv                     float vs int8 WER / size / latency (only if int8 reports exist)
    report.json                  all of the above plus the figure paths
    best_vs_compute.png, trials.png, curves.png, int8.png   (see ``asr_tune.report.plots``)

Usage::

    from asr_tune.report import make_report
    rep = make_report(["runs/search/asha", "runs/search/random"], out="results/report")
    rep["summary"][0]["best"], rep["figures"]["best_vs_compute"]
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from asr_tune.report.experiments import Experiment, load_experiment


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 1) == 0:
        return _finite(v.item())
    return v


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _finite(v) for k, v in row.items()} for row in df.to_dict("records")]


def unique_labels(exps: Sequence[Experiment]) -> None:
    """Make experiment labels unique (suffix ``#2``, ``#3``... on repeats)."""
    seen: dict[str, int] = {}
    for e in exps:
        n = seen.get(e.label, 0) + 1
        seen[e.label] = n
        if n > 1:
            e.label = f"{e.label} #{n}"


def summary_row(exp: Experiment) -> dict[str, Any]:
    """One experiment in one row: counts, compute, best metric and when/where it was reached."""
    t, ev, m = exp.table(), exp.events(), exp.metric
    best = exp.best_value
    row: dict[str, Any] = {
        "experiment": exp.label, "name": exp.name, "searcher": exp.searcher, "metric": m,
        "max_epochs": exp.max_epochs, "trials": len(t),
        "completed": int(((t["epochs"] >= exp.max_epochs) & (t["status"] != "ERROR")).sum()),
        "stopped_early": int(t["stopped_early"].sum()), "errors": int((t["status"] == "ERROR").sum()),
        "trial_epochs": int(t["epochs"].sum()), "compute_s": float(t["compute_s"].sum()),
        f"best_{m}": best, "best_trial": None, "best_config": json.dumps(exp.best_config,
                                                                          sort_keys=True),
        "epochs_to_best": None, "compute_s_to_best": None, "trials_to_best": None,
        "test_wer": (exp.test or {}).get("wer"), "path": str(exp.path)}
    bt = exp.best_trial()
    if bt is not None:
        row["best_trial"] = bt.trial_id
    if best is not None and len(ev):
        hit = ev[ev["best_so_far"] == best].iloc[0]
        row.update(epochs_to_best=int(hit["cum_epochs"]), compute_s_to_best=float(hit["cum_compute_s"]),
                   trials_to_best=int(hit["trials_started"]))
    return {k: _finite(v) for k, v in row.items()}


def trials_frame(exps: Sequence[Experiment]) -> pd.DataFrame:
    frames = []
    for e in exps:
        t = e.table()
        t.insert(0, "experiment", e.label)
        t.insert(1, "rank", range(1, len(t) + 1))
        frames.append(t)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def make_report(dirs: Sequence[str | Path], out: str | Path | None = None,
                labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Load the experiments, write tables + figures under ``out`` (default ``dirs[0]/report``)
    and return everything as a dict (``summary``, ``trials``, ``int8``, ``figures``, ``files``)."""
    from asr_tune.report.plots import plot_all

    if not dirs:
        raise ValueError("make_report: no experiment folder given")
    exps = [load_experiment(d, label=(labels[i] if labels and i < len(labels) else None))
            for i, d in enumerate(dirs)]
    unique_labels(exps)
    out_dir = Path(out) if out is not None else Path(exps[0].path) / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = pd.DataFrame([summary_row(e) for e in exps])
    trials = trials_frame(exps)
    int8 = pd.DataFrame([{"experiment": e.label, **r} for e in exps for r in e.int8])
    files = {"summary_csv": out_dir / "summary.csv", "summary_json": out_dir / "summary.json",
             "trials_csv": out_dir / "trials.csv", "trials_json": out_dir / "trials.json"}
    summary.to_csv(files["summary_csv"], index=False)
    files["summary_json"].write_text(json.dumps(_records(summary), indent=1))
    trials.to_csv(files["trials_csv"], index=False)
    files["trials_json"].write_text(json.dumps(_records(trials), indent=1))
    if len(int8):
        files["int8_csv"] = out_dir / "int8.csv"
        int8.to_csv(files["int8_csv"], index=False)
    figures = plot_all(exps, out_dir)
    report = {"out": str(out_dir), "experiments": [str(e.path) for e in exps],
              "summary": _records(summary), "trials": _records(trials), "int8": _records(int8),
              "best": [{"experiment": e.label, "metric": e.metric, "value": _finite(e.best_value),
                        "config": e.best_config, "test": e.test} for e in exps],
              "figures": figures, "files": {k: str(v) for k, v in files.items()}}
    files["report_json"] = out_dir / "report.json"
    report["files"]["report_json"] = str(files["report_json"])
    files["report_json"].write_text(json.dumps(report, indent=1, default=str))
    return report


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def short_config(config: Any) -> str:
    """``{"optim.lr": 0.00216..., "model.num_layers": 2}`` -> ``lr=0.00217 num_layers=2``."""
    try:
        d = json.loads(config) if isinstance(config, str) else dict(config or {})
    except (ValueError, TypeError):
        return str(config)
    tails = [k.rsplit(".", 1)[-1] for k in d]
    parts = []
    for key, tail in zip(d, tails):
        name = tail if tails.count(tail) == 1 else key
        v = d[key]
        parts.append(f"{name}={v:.3g}" if isinstance(v, float) else f"{name}={v}")
    return " ".join(parts)


def print_report(report: dict[str, Any], console: Any = None, max_trials: int = 10) -> None:
    """Print the summary, the top trials, the best configs and the int8 table with rich."""
    from rich.console import Console
    from rich.table import Table

    con = console or Console()
    if console is None and not con.is_terminal:
        con = Console(width=max(con.width, 160))  # logs and pipes: do not squeeze the tables
    if not report["summary"]:
        return
    m = report["summary"][0]["metric"]
    st = Table(title=f"experiments ({m}; compute in trial-epochs and trial-seconds)")
    cols = ["experiment", "trials", "completed", "stopped_early", "errors", "trial_epochs",
            "compute_s", f"best_{m}", "epochs_to_best", "compute_s_to_best", "trials_to_best",
            "test_wer"]
    for c in cols:
        st.add_column(c.replace("_", " "), justify="left" if c == "experiment" else "right")
    for row in report["summary"]:
        st.add_row(*[_fmt(row.get(c), 1 if c.startswith("compute") else 2) for c in cols])
    con.print(st)
    by_exp: dict[str, list[dict[str, Any]]] = {}
    for r in report["trials"]:
        by_exp.setdefault(r["experiment"], []).append(r)
    for label, rows in by_exp.items():
        tt = Table(title=f"{label}: top {min(max_trials, len(rows))} of {len(rows)} trials")
        for c in ("rank", "trial_id", "status", "epochs", f"best_{m}", f"last_{m}", "wall_s", "config"):
            tt.add_column(c.replace("_", " "), justify="left" if c in ("trial_id", "config") else "right")
        for r in rows[:max_trials]:
            tt.add_row(*[_fmt(r.get(c)) for c in ("rank", "trial_id", "status", "epochs", f"best_{m}",
                                                  f"last_{m}", "wall_s")], short_config(r.get("config")))
        con.print(tt)
    for b in report["best"]:
        test = f", test WER {_fmt((b.get('test') or {}).get('wer'))}%" if b.get("test") else ""
        con.print(f"best config of {b['experiment']} ({m} {_fmt(b['value'])}{test}): "
                  f"{json.dumps(b['config'], sort_keys=True)}")
    if report["int8"]:
        qt = Table(title="float vs int8 (top-k quantized)")
        cols8 = ["experiment", "rank", "accepted", "float_wer", "int8_wer", "float_bytes", "int8_bytes",
                 "float_latency_ms", "int8_latency_ms"]
        for c in cols8:
            qt.add_column(c.replace("_", " "), justify="left" if c == "experiment" else "right")
        for r in report["int8"]:
            qt.add_row(*[_fmt(r.get(c)) if "bytes" not in c else _fmt(r.get(c), 0) for c in cols8])
        con.print(qt)
    con.print(f"figures: {', '.join(report['figures'].values())}")
    con.print(f"tables: {report['files']['summary_csv']}, {report['files']['trials_csv']}, "
              f"{report['files']['report_json']}")
