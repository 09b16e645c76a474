"""Compact search progress: one line (at most 120 columns) per trial report, start, retry and end,
instead of Ray Tune's full-width status tables (``RunConfig(verbose=0)`` turns those off).

Usage (what ``tuning/runner.py`` does)::

    from asr_tune.tuning.progress import CompactProgress
    tune.RunConfig(..., verbose=0, callbacks=[CompactProgress("val_wer", "min")])

A line looks like::

    [  42s] 3c1f_00002 ep  2 val_wer  48.31 best  48.31 node 6874ac80 gpu 1 cpu | run 4 done 0 err 0
"""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ray.tune import Callback

WIDTH = 120


def _num(value: Any, spec: str) -> str:
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return "-"


def _where(result: dict) -> str:
    node = "/".join(n[:8] for n in str(result.get("ray_node_id") or "").split("/")) or "?"  # DDP: per rank
    gpus = result.get("gpu_ids") or "-"
    return f"node {node} gpu {gpus} {result.get('accelerator') or '?'}"


def _counts(trials: list[Any]) -> str:
    status = [getattr(t, "status", "") for t in trials]
    return (f"run {status.count('RUNNING')} done {status.count('TERMINATED')} "
            f"err {status.count('ERROR')}")


def report_line(elapsed_s: float, trial_id: str, result: dict, metric: str, best: float | None,
                trials: list[Any]) -> str:
    """One report as a line of at most ``WIDTH`` columns."""
    epoch = result.get("epoch", result.get("training_iteration"))
    line = (f"[{elapsed_s:5.0f}s] {trial_id} ep {_num(epoch, '3.0f')} {metric} "
            f"{_num(result.get(metric), '7.2f')} best {_num(best, '7.2f')} {_where(result)} | "
            f"{_counts(trials)}")
    return line[:WIDTH]


class CompactProgress(Callback):
    """Prints :func:`report_line` for every result, and one line per start / retry / end / error."""

    def __init__(self, metric: str, mode: str, out: TextIO | None = None) -> None:
        self.metric, self.mode, self.out = metric, mode, out
        self.start = time.monotonic()
        self.best: dict[str, float] = {}

    def _print(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:5.0f}s] {text}"[:WIDTH], file=self.out or sys.stdout,
              flush=True)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(f"{trial.trial_id} started | {_counts(trials)}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        value = result.get(self.metric)
        if isinstance(value, (int, float)):
            old = self.best.get(trial.trial_id)
            better = old is None or (value < old if self.mode == "min" else value > old)
            self.best[trial.trial_id] = float(value) if better else old
        print(report_line(time.monotonic() - self.start, trial.trial_id, result, self.metric,
                          self.best.get(trial.trial_id), trials), file=self.out or sys.stdout, flush=True)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(f"{trial.trial_id} failed ({trial.num_failures} failure(s)): retrying from its last "
                    f"checkpoint | {_counts(trials)}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(f"{trial.trial_id} finished, best {self.metric} "
                    f"{_num(self.best.get(trial.trial_id), '.2f')} | {_counts(trials)}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(f"{trial.trial_id} ERROR after {trial.num_failures} failure(s) | {_counts(trials)}")
