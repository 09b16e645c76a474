"""State of the Tune experiment a job writes under ``<storage>/<name>`` (for ``jobs.status``).

:func:`read_experiment` reads the newest ``experiment_state-*.json`` Tune writes (trial status,
per-trial metric min/max) and each trial dir's ``error.txt`` -- on the local disk or any pyarrow
filesystem URI -- into an :class:`ExperimentSummary`: trial counts by state, the best metric so
far, failing trials' errors (:class:`TrialError`), and per trial the node / GPU ids of its last
report and its retry count (:class:`TrialPlace`).
"""
from __future__ import annotations

import contextlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrialError:
    trial: str
    message: str  # last line of the trial's error.txt (the exception)
    path: str = ""


@dataclass
class TrialPlace:
    """Where a trial ran (its last report) and how often Tune retried it."""

    trial: str
    status: str
    node_id: str = ""
    gpu_ids: str = ""
    cuda_visible_devices: str = ""
    accelerator: str = ""
    epoch: int | None = None
    retries: int = 0


@dataclass
class ExperimentSummary:
    """State of the Tune experiment a job writes under ``<storage>/<name>``."""

    path: str
    metric: str = "val_wer"
    mode: str = "min"
    counts: dict[str, int] = field(default_factory=dict)  # trial status -> number of trials
    best: float | None = None
    best_trial: str | None = None
    errors: list[TrialError] = field(default_factory=list)
    trials: list[TrialPlace] = field(default_factory=list)

    @property
    def num_trials(self) -> int:
        return sum(self.counts.values())


def read_experiment(path: str, metric: str = "val_wer", mode: str = "min") -> ExperimentSummary | None:
    """Summarize a Tune experiment dir (local path or URI); None when it does not exist (yet).

    Reads the newest ``experiment_state-*.json`` Tune writes (trial status, per-trial metric
    min/max) and each trial dir's ``error.txt``; without a state file, falls back to the trial
    dirs' ``result.json``.
    """
    fs = _ExperimentFS.open(path)
    if fs is None:
        return None
    summary = ExperimentSummary(path=path, metric=metric, mode=mode)
    states = sorted(n for n in fs.files("") if n.startswith("experiment_state-") and n.endswith(".json"))
    trials = _trials_from_state(fs.read(states[-1])) if states else _trials_from_dirs(fs, metric)
    counts: Counter[str] = Counter()
    for trial in trials:
        counts[trial["status"]] += 1
        _update_best(summary, trial, metric, mode)
    summary.counts = dict(sorted(counts.items()))
    summary.errors = _trial_errors(fs, trials)
    summary.trials = [_place(t) for t in trials]
    return summary


def _place(trial: dict[str, Any]) -> TrialPlace:
    last = trial.get("last_result") or {}
    epoch = last.get("epoch", last.get("training_iteration"))
    return TrialPlace(trial["id"], trial["status"], str(last.get("ray_node_id") or ""),
                      str(last.get("gpu_ids") or ""), str(last.get("cuda_visible_devices") or ""),
                      str(last.get("accelerator") or ""),
                      int(epoch) if isinstance(epoch, (int, float)) else None,
                      int(trial.get("num_failures") or 0))


def _trials_from_state(text: str) -> list[dict[str, Any]]:
    trials = []
    for entry in json.loads(text).get("trial_data", []):
        state = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
        runtime = json.loads(entry[1]) if len(entry) > 1 and isinstance(entry[1], str) else {}
        trials.append({"id": state.get("trial_id", "?"), "status": state.get("status", "UNKNOWN"),
                       "dir": state.get("relative_logdir") or "",
                       "analysis": (runtime or {}).get("metric_analysis") or {},
                       "error_file": (runtime or {}).get("error_filename"),
                       "last_result": (runtime or {}).get("last_result") or {},
                       "num_failures": (runtime or {}).get("num_failures") or 0})
    return trials


def _trials_from_dirs(fs: "_ExperimentFS", metric: str) -> list[dict[str, Any]]:
    trials = []
    for d in fs.dirs(""):
        files = fs.files(d)
        if "result.json" not in files and "params.json" not in files:
            continue
        values, last = [], {}
        if "result.json" in files:
            for line in fs.read(f"{d}/result.json").splitlines():
                with contextlib.suppress(ValueError, TypeError):
                    last = json.loads(line)
                    v = last.get(metric)
                    if isinstance(v, (int, float)):
                        values.append(float(v))
        analysis = {metric: {"min": min(values), "max": max(values)}} if values else {}
        trials.append({"id": d, "status": "ERROR" if "error.txt" in files else "REPORTED",
                       "dir": d, "analysis": analysis, "error_file": "error.txt" if "error.txt" in files else None,
                       "last_result": last if isinstance(last, dict) else {}})
    return trials


def _update_best(summary: ExperimentSummary, trial: dict[str, Any], metric: str, mode: str) -> None:
    value = (trial["analysis"].get(metric) or {}).get(mode)
    if not isinstance(value, (int, float)):
        return
    if summary.best is None or (value < summary.best if mode == "min" else value > summary.best):
        summary.best, summary.best_trial = float(value), trial["id"]


def _trial_errors(fs: "_ExperimentFS", trials: list[dict[str, Any]]) -> list[TrialError]:
    errors = []
    for trial in trials:
        if trial["status"] != "ERROR" and not trial.get("error_file"):
            continue
        rel = f"{trial['dir']}/{trial.get('error_file') or 'error.txt'}"
        try:
            text = fs.read(rel)
        except (OSError, FileNotFoundError):
            if trial["status"] == "ERROR":
                errors.append(TrialError(trial["id"], "failed (no error.txt found)", rel))
            continue
        errors.append(TrialError(trial["id"], _exception_line(text), fs.join(rel)))
    return errors


def _exception_line(text: str) -> str:
    """The exception line of a traceback (its last non-blank line)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(empty error.txt)"


class _ExperimentFS:
    """Minimal read-only view of an experiment dir on the local disk or a pyarrow filesystem."""

    def __init__(self, root: str, pafs: Any = None) -> None:
        self.root, self.pafs = root.rstrip("/"), pafs

    @classmethod
    def open(cls, path: str) -> "_ExperimentFS | None":
        if "://" not in path:
            return cls(path) if Path(path).is_dir() else None
        import pyarrow.fs as pafs

        fs, root = pafs.FileSystem.from_uri(path)
        if fs.get_file_info(root).type != pafs.FileType.Directory:
            return None
        return cls(root, fs)

    def join(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def _entries(self, rel: str) -> list[tuple[str, bool]]:
        if self.pafs is None:
            return [(p.name, p.is_dir()) for p in Path(self.join(rel)).iterdir()]
        import pyarrow.fs as pafs

        infos = self.pafs.get_file_info(pafs.FileSelector(self.join(rel), allow_not_found=True))
        return [(i.base_name, i.type == pafs.FileType.Directory) for i in infos]

    def files(self, rel: str) -> list[str]:
        return [n for n, is_dir in self._entries(rel) if not is_dir]

    def dirs(self, rel: str) -> list[str]:
        return sorted(n for n, is_dir in self._entries(rel) if is_dir)

    def read(self, rel: str) -> str:
        if self.pafs is None:
            return Path(self.join(rel)).read_text(errors="replace")
        with self.pafs.open_input_stream(self.join(rel)) as f:
            return f.read().decode(errors="replace")
