"""PNG figures of one or several experiments (matplotlib ``Figure`` + Agg canvas, no pyplot state).

* ``best_vs_compute.png``: best val metric so far vs cumulative trial-epochs and vs cumulative
  trial-seconds, one line per experiment (searcher);
* ``trials.png``: trials run and stopped early (epochs < max_epochs) per experiment;
* ``curves.png``: every trial's learning curve per experiment, the best one highlighted;
* ``int8.png``: float vs int8 WER, size and latency of the quantized top-k (when reports exist).

Usage::

    from asr_tune.report.experiments import load_experiment
    from asr_tune.report.plots import plot_all
    paths = plot_all([load_experiment("runs/search/a"), load_experiment("runs/search/b")], "out/")
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from asr_tune.report.experiments import Experiment

DPI = 120


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (7.0, 4.5)) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _metric_label(metric: str) -> str:
    return {"val_wer": "val WER (%)", "val_loss": "val loss"}.get(metric, metric)


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_best_vs_compute(exps: Sequence[Experiment], path: Path) -> Path:
    """Best-so-far metric vs cumulative trial-epochs (left) and trial-seconds (right)."""
    fig, axes = _figure(1, 2, (12.0, 4.8))
    metric = exps[0].metric
    for exp, color in zip(exps, _colors(len(exps))):
        ev = exp.events()
        if not len(ev):
            continue
        for ax, x in zip(axes[0], ("cum_epochs", "cum_compute_s")):
            ax.step(ev[x], ev["best_so_far"], where="post", color=color, lw=1.8,
                    label=f"{exp.label}: {ev['best_so_far'].iloc[-1]:.2f}")
            ax.plot(ev[x].iloc[-1], ev["best_so_far"].iloc[-1], "o", color=color, ms=4)
    from matplotlib.ticker import MaxNLocator

    titles = ("vs compute in trial-epochs", "vs compute in trial-seconds")
    xlabels = ("cumulative trial-epochs (all trials, in time order)",
               "cumulative trial seconds (sum of epoch times)")
    for ax, title, xl in zip(axes[0], titles, xlabels):
        ax.set_title(f"best {_metric_label(metric)} so far {title}")
        ax.set_xlabel(xl)
        if x_is_epochs(xl):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"best {_metric_label(metric)}")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, title="experiment: final best", title_fontsize=8)
    return _save(fig, path)


def x_is_epochs(label: str) -> bool:
    return "epochs" in label


def plot_trials(exps: Sequence[Experiment], path: Path) -> Path:
    """Trials that ran to max_epochs vs stopped early (vs errored), per experiment."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = _figure(1, 2, (12.0, 4.5))
    labels = [e.label for e in exps]
    full, early, err, epochs = [], [], [], []
    for e in exps:
        t = e.table()
        err.append(int((t["status"] == "ERROR").sum()))
        early.append(int(t["stopped_early"].sum()))
        full.append(len(t) - err[-1] - early[-1])
        epochs.append(int(t["epochs"].sum()))
    ax = axes[0][0]
    x = list(range(len(exps)))
    ax.bar(x, full, color="tab:green", label="ran to max_epochs")
    ax.bar(x, early, bottom=full, color="tab:orange", label="stopped early (epochs < max_epochs)")
    ax.bar(x, err, bottom=[a + b for a, b in zip(full, early)], color="tab:red", label="error")
    ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("trials")
    ax.set_title("trials run and stopped early")
    ax.set_ylim(0, 1.3 * max([a + b + c for a, b, c in zip(full, early, err)] + [1]))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    ax = axes[0][1]
    for i, (e, color) in enumerate(zip(exps, _colors(len(exps)))):
        t = e.table()
        n = len(t)
        jitter = [i + (0.5 * (k / max(n - 1, 1)) - 0.25 if n > 1 else 0.0) for k in range(n)]
        ax.scatter(jitter, t["epochs"], color=color, alpha=0.6, s=18)
        if e.max_epochs:
            ax.hlines(e.max_epochs, i - 0.4, i + 0.4, color="k", lw=1)
    ax.set_xticks(x, [f"{lab}\n({n} trial-epochs)" for lab, n in zip(labels, epochs)],
                  rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("epochs run per trial")
    ax.set_ylim(0, max([e.max_epochs for e in exps] + [int(t_max) for t_max in epochs_max(exps)]) + 1)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("epochs per trial (black bar: max_epochs)")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def epochs_max(exps: Sequence[Experiment]) -> list[int]:
    return [max([t.epochs for t in e.trials], default=0) for e in exps]


def plot_curves(exps: Sequence[Experiment], path: Path, max_panels: int = 12) -> Path:
    """Each trial's metric per epoch; one panel per experiment; best trial in black."""
    from matplotlib.ticker import MaxNLocator

    shown = list(exps)[:max_panels]
    ncols = min(3, len(shown))
    nrows = math.ceil(len(shown) / ncols)
    fig, axes = _figure(nrows, ncols, (4.6 * ncols, 3.6 * nrows))
    for k, exp in enumerate(shown):
        ax = axes[k // ncols][k % ncols]
        best = exp.best_trial()
        for t in exp.trials:
            h = t.history
            if exp.metric not in h or not len(h):
                continue
            is_best = best is not None and t.trial_id == best.trial_id
            stopped = t.epochs < exp.max_epochs
            ax.plot(h["training_iteration"], h[exp.metric], lw=2.2 if is_best else 0.9,
                    color="k" if is_best else ("tab:orange" if stopped else "tab:blue"),
                    alpha=1.0 if is_best else 0.55, zorder=3 if is_best else 2,
                    marker="o" if len(h) == 1 else None, ms=3)
        ax.set_title(f"{exp.label}: {len(exp.trials)} trials", fontsize=9)
        ax.set_xlabel("epoch (training_iteration)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(_metric_label(exp.metric))
        ax.grid(alpha=0.3)
    for k in range(len(shown), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="k", lw=2.2, label="best trial"),
               Line2D([], [], color="tab:blue", label="ran to max_epochs"),
               Line2D([], [], color="tab:orange", label="stopped early")]
    axes[0][0].legend(handles=handles, fontsize=7)
    fig.suptitle("learning curves per trial")
    return _save(fig, path)


def plot_int8(exps: Sequence[Experiment], path: Path) -> Path | None:
    """Float vs int8 WER, size and latency for every int8 report; ``None`` when there is none."""
    rows = [(e.label, r) for e in exps for r in e.int8]
    if not rows:
        return None
    fig, axes = _figure(1, 3, (13.0, 4.2))
    names = [f"{lab} rank{r['rank']}" for lab, r in rows]
    x = list(range(len(rows)))
    panels = [("WER (%)", "float_wer", "int8_wer", 1.0),
              ("model size (MB, ONNX)", "float_bytes", "int8_bytes", 1e-6),
              ("latency (ms, ORT median)", "float_latency_ms", "int8_latency_ms", 1.0)]
    for ax, (title, fk, ik, scale) in zip(axes[0], panels):
        fv = [(r.get(fk) or 0.0) * scale for _, r in rows]
        iv = [(r.get(ik) or 0.0) * scale for _, r in rows]
        ax.bar([i - 0.2 for i in x], fv, width=0.4, label="float", color="tab:blue")
        ax.bar([i + 0.2 for i in x], iv, width=0.4, label="int8", color="tab:purple")
        ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
        ax.set_title(f"float vs int8: {title}")
        ax.set_ylabel(title)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_all(exps: Sequence[Experiment], out: str | Path) -> dict[str, str]:
    """Write every figure that applies under ``out``; returns ``{name: path}``."""
    out = Path(out)
    paths: dict[str, Path | None] = {
        "best_vs_compute": plot_best_vs_compute(exps, out / "best_vs_compute.png"),
        "trials": plot_trials(exps, out / "trials.png"),
        "curves": plot_curves(exps, out / "curves.png"),
        "int8": plot_int8(exps, out / "int8.png"),
    }
    return {k: str(v) for k, v in paths.items() if v is not None}
