"""Read a search's experiment folder without Ray: trials, per-epoch curves, best config, int8 reports.

Only files are read, through the one experiment-folder reader (:mod:`asr_tune.tuning.folder`:
Ray's ``experiment_state-*.json``, each trial's ``result.json`` / ``progress.csv`` and
``params.json``, ``results.csv`` statuses, ``asr_tune_search.json``), plus the report's own
files (``best/best.json``, ``best/test_wer.json``, ``int8/rank<k>/*.json``). Ray need not be
running, or even be importable.

Usage::

    from asr_tune.report.experiments import load_experiment
    exp = load_experiment("runs/search/ci_search_tiny")
    exp.table()          # one row per trial (pandas), best first
    exp.events()         # every reported epoch in time order, with cumulative compute + best-so-far
    exp.trials[0].history[["training_iteration", "val_wer"]]
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from asr_tune.tuning.folder import (  # noqa: F401  (re-exported: the report's names for them)
    RECORDED_TIME_KEY, STATE_FILE, WALL_TIME_KEY, TrialFolder, best_of, epochs_of, read_folder,
    read_history, read_json)

@dataclass
class TrialRecord(TrialFolder):
    """One trial as the report uses it: the reader's trial, its history with event times and compute."""

    @property
    def epochs(self) -> int:
        return epochs_of(self.history)

    def best(self, metric: str, mode: str = "min") -> float | None:
        return best_of(self.history, metric, mode)

    def last(self, metric: str) -> float | None:
        if metric not in self.history:
            return None
        col = pd.to_numeric(self.history[metric], errors="coerce").dropna()
        return float(col.iloc[-1]) if len(col) else None

    @property
    def wall_s(self) -> float:
        h = self.history
        if "time_total_s" in h and len(h):
            return float(pd.to_numeric(h["time_total_s"], errors="coerce").max())
        return float("nan")

    @property
    def compute_s(self) -> float:
        """Seconds of training this trial cost (recorded seconds for replayed trials)."""
        h = self.history
        return float(h["compute_s"].sum()) if "compute_s" in h else float("nan")


@dataclass
class Experiment:
    """One experiment folder, read from disk (see the module docstring)."""

    path: Path
    name: str
    searcher: str
    metric: str
    mode: str
    max_epochs: int
    base_config: dict[str, Any]
    trials: list[TrialRecord]
    best_info: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    int8: list[dict[str, Any]] = field(default_factory=list)
    label: str = ""

    def __post_init__(self) -> None:
        self.label = self.label or (self.name if self.searcher in self.name
                                    else f"{self.name} ({self.searcher})")

    # --------------------------------------------------------------------------------- tables
    def table(self) -> pd.DataFrame:
        """One row per trial, best first (the same columns as the search's ``results.csv``)."""
        m = self.metric
        rows = [{"trial_id": t.trial_id, "index": t.index, "status": t.status, "epochs": t.epochs,
                 "stopped_early": t.epochs < self.max_epochs and t.status != "ERROR",
                 f"best_{m}": t.best(m, self.mode), f"last_{m}": t.last(m), "wall_s": t.wall_s,
                 "compute_s": t.compute_s, "config": json.dumps(t.config, sort_keys=True),
                 "error": t.error, "path": t.path} for t in self.trials]
        cols = ["trial_id", "index", "status", "epochs", "stopped_early", f"best_{m}", f"last_{m}",
                "wall_s", "compute_s", "config", "error", "path"]
        table = pd.DataFrame(rows, columns=cols)
        return table.sort_values([f"best_{m}", "index"], ascending=[self.mode == "min", True],
                                 na_position="last").reset_index(drop=True)

    def events(self) -> pd.DataFrame:
        """Every reported epoch of every trial in time order.

        Columns: ``trial_id``, ``index``, ``training_iteration``, the metric, ``t`` (estimated
        wall-clock time), ``compute_s``, ``cum_epochs`` (trial-epochs so far), ``cum_compute_s``,
        ``best_so_far`` and ``trials_started`` (distinct trials seen so far).
        """
        m = self.metric
        parts = []
        for t in self.trials:
            h = t.history
            if not len(h) or m not in h:
                continue
            parts.append(pd.DataFrame({
                "trial_id": t.trial_id, "index": t.index,
                "training_iteration": h["training_iteration"].to_numpy(),
                m: pd.to_numeric(h[m], errors="coerce").to_numpy(),
                "t": h["t"].to_numpy(), "compute_s": h["compute_s"].to_numpy()}))
        if not parts:
            return pd.DataFrame(columns=["trial_id", "index", "training_iteration", m, "t",
                                         "compute_s", "cum_epochs", "cum_compute_s",
                                         "best_so_far", "trials_started"])
        ev = pd.concat(parts, ignore_index=True)
        ev = ev.sort_values(["t", "index", "training_iteration"], kind="stable").reset_index(drop=True)
        ev["cum_epochs"] = range(1, len(ev) + 1)
        ev["cum_compute_s"] = ev["compute_s"].fillna(0.0).cumsum()
        vals = ev[m].fillna(math.inf if self.mode == "min" else -math.inf)
        ev["best_so_far"] = vals.cummin() if self.mode == "min" else vals.cummax()
        ev["best_so_far"] = ev["best_so_far"].replace([math.inf, -math.inf], float("nan"))
        ev["trials_started"] = (~ev["trial_id"].duplicated()).cumsum()
        return ev

    def best_trial(self) -> TrialRecord | None:
        scored = [t for t in self.trials if t.best(self.metric, self.mode) is not None]
        if not scored:
            return None
        sign = 1.0 if self.mode == "min" else -1.0
        return min(scored, key=lambda t: (sign * (t.best(self.metric, self.mode) or 0.0), t.index))

    @property
    def best_value(self) -> float | None:
        bt = self.best_trial()
        return bt.best(self.metric, self.mode) if bt else None

    @property
    def best_config(self) -> dict[str, Any]:
        """The best trial's overrides (``best/best.json`` when the search wrote one)."""
        if self.best_info and isinstance(self.best_info.get("overrides"), dict):
            return dict(self.best_info["overrides"])
        bt = self.best_trial()
        return dict(bt.config) if bt else {}


# ------------------------------------------------------------------------------------- loading


def load_experiment(path: str | Path, label: str | None = None) -> Experiment:
    """Read one experiment folder (``ValueError`` if it holds no trial and no asr-tune state)."""
    folder = read_folder(path)
    root, state, cfg = folder.path, folder.state, folder.config
    search = cfg.get("search") or {}
    trials = [_record(t) for t in folder.trials]
    if not trials and not state:
        raise ValueError(f"{root}: no trial folders (result.json / progress.csv) and no {STATE_FILE}")
    best_info = read_json(root / "best" / "best.json")
    test = read_json(root / "best" / "test_wer.json") or (best_info or {}).get("test")
    return Experiment(path=root, name=str(state.get("name") or root.name),
                      searcher=str(search.get("searcher") or "unknown"),
                      metric=str(search.get("metric") or "val_wer"),
                      mode=str(search.get("mode") or "min"), max_epochs=folder.max_epochs,
                      base_config=cfg, trials=trials, best_info=best_info, test=test,
                      int8=load_int8_reports(root), label=label or "")


def _record(t: TrialFolder) -> TrialRecord:
    """A trial as the report uses it: the reader's trial plus event times and compute seconds."""
    hist = t.history
    hist["t"] = _event_times(hist)
    hist["compute_s"] = _compute_seconds(hist)
    return TrialRecord(trial_id=t.trial_id, index=t.index, path=t.path, config=t.config,
                       history=hist, status=t.status, error=t.error)


def _event_times(h: pd.DataFrame) -> pd.Series:
    """Wall-clock time of each report: ``report_time`` if reported, else estimated per restore
    segment as ``min(timestamp - time_since_restore) + time_since_restore`` (sub-second order)."""
    if WALL_TIME_KEY in h:
        t = pd.to_numeric(h[WALL_TIME_KEY], errors="coerce")
        if t.notna().all():
            return t
    if "timestamp" not in h:
        return pd.Series(range(len(h)), dtype=float)
    ts = pd.to_numeric(h["timestamp"], errors="coerce").astype(float)
    since = pd.to_numeric(h.get("time_since_restore", h.get("time_total_s", 0.0)),
                          errors="coerce").fillna(0.0).astype(float)
    its = pd.to_numeric(h.get("iterations_since_restore", pd.Series(range(1, len(h) + 1))),
                        errors="coerce").fillna(1).astype(int)
    segment = (its.diff().fillna(1) <= 0).cumsum()  # a new segment starts where it resets
    start = (ts - since).groupby(segment).transform("min")
    return start + since


def _compute_seconds(h: pd.DataFrame) -> pd.Series:
    for key in (RECORDED_TIME_KEY, "time_this_iter_s"):
        if key in h:
            return pd.to_numeric(h[key], errors="coerce").fillna(0.0).astype(float)
    return pd.Series([float("nan")] * len(h))


def load_int8_reports(root: Path) -> list[dict[str, Any]]:
    """The int8 stage's reports (``int8/rank<k>/*.json``), flattened to the fields the report shows.

    The report format belongs to ``asr_tune.quant``; every field is optional here.
    """
    out = []
    for rank_dir in sorted((root / "int8").glob("rank*"), key=lambda p: _rank(p.name)):
        for f in sorted(rank_dir.glob("*.json")):
            d = read_json(f)
            if isinstance(d, dict) and ("float_wer" in d or "int8_wer" in d or "gate" in d):
                out.append(flatten_int8(d, _rank(rank_dir.name), str(f)))
                break
    return out


def _rank(name: str) -> int:
    digits = "".join(c for c in name if c.isdigit())
    return int(digits) if digits else 0


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _dig(d: Any, *keys: str) -> Any:
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def flatten_int8(d: dict[str, Any], rank: int, path: str) -> dict[str, Any]:
    gate = d.get("gate") if isinstance(d.get("gate"), dict) else {}
    lat, size = d.get("latency") or {}, d.get("size") or {}

    def ms(key: str) -> float | None:
        v = _num(_dig(lat, key, "median_s"))
        return None if v is None else 1000 * v

    return {"rank": rank, "path": path, "accepted": d.get("accepted"), "mode": d.get("mode"),
            "float_wer": _num(d.get("float_wer", gate.get("float_wer"))),
            "int8_wer": _num(d.get("int8_wer", gate.get("int8_wer"))),
            "float_bytes": _num(size.get("float_onnx_bytes")),
            "int8_bytes": _num(size.get("int8_onnx_bytes")),
            "float_latency_ms": ms("float_onnx"), "int8_latency_ms": ms("int8_onnx"),
            "reason": d.get("reason")}
