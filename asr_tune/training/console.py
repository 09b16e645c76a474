"""What ``asr-tune train`` prints while it trains when the progress bar is off: one line per epoch.

Usage::

    asr-tune train configs/synth_tiny.yaml --set trainer.progress_bar=false
    # epoch  1/30  train loss 3.412  val loss 3.001  val WER 98.40%  lr 4.0e-04  elapsed 6.1 s
    # epoch  2/30  ...

    from asr_tune.training.console import console_callbacks
    trainer = make_trainer(cfg, standard_callbacks(cfg, ckpt_dir) + console_callbacks(cfg), out)

The train loss is the mean over the epoch's batches; val loss / val WER are the epoch's validation
(``-`` when no validation ran); lr is the first parameter group's at the end of the epoch; elapsed is
wall time since ``fit`` started. Only rank 0 prints, and only in a ``fit`` (not in a Ray trial:
trials report to Tune instead).
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import Callback

from asr_tune.config import ExperimentConfig


class EpochLines(Callback):
    """Prints one summary line per training epoch (see the module docstring)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._start = time.perf_counter()
        self._loss_sum, self._batches = 0.0, 0

    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._loss_sum, self._batches = 0.0, 0

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            value = float(loss)
            if math.isfinite(value):
                self._loss_sum, self._batches = self._loss_sum + value, self._batches + 1

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        print(self.line(trainer), file=self.stream or sys.stdout, flush=True)

    def line(self, trainer: L.Trainer) -> str:
        m = trainer.callback_metrics
        width = len(str(trainer.max_epochs)) if trainer.max_epochs and trainer.max_epochs > 0 else 1
        total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        train = self._loss_sum / self._batches if self._batches else float("nan")
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        return (f"epoch {trainer.current_epoch + 1:>{width}}{total}  train loss {_num(train, '.3f')}  "
                f"val loss {_num(m.get('val_loss'), '.3f')}  val WER {_num(m.get('val_wer'), '.2f', '%')}  "
                f"lr {_num(lr, '.1e')}  elapsed {time.perf_counter() - self._start:.1f} s")


def _num(value: Any, fmt: str, unit: str = "") -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    return f"{v:{fmt}}{unit}" if math.isfinite(v) else "-"


def console_callbacks(cfg: ExperimentConfig) -> list[Callback]:
    """``[EpochLines()]`` when ``trainer.progress_bar`` is off (the bar shows the same), else ``[]``."""
    return [] if cfg.trainer.progress_bar else [EpochLines()]
