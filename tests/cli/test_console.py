"""What the terminal shows: each Lightning log line once, no cloud-logger tip, and one line per epoch
from ``asr-tune train`` when the progress bar is off."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from asr_tune.cli import main
from asr_tune.training.console import EpochLines

ROOT = Path(__file__).resolve().parents[2]

_EMIT = """
from lightning.pytorch.utilities import rank_zero_info
rank_zero_info("GPU available: hello")
rank_zero_info("\\N{ELECTRIC LIGHT BULB} Tip: For seamless cloud logging, try installing litlogger")
"""


def test_lightning_lines_print_once_and_the_tip_not_at_all() -> None:
    """As in ``asr-tune``: logging is configured first, Lightning is imported later by a command."""
    code = "from asr_tune.cli import configure_logging\nconfigure_logging()\n" + _EMIT
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    printed = out.stdout + out.stderr
    assert printed.count("GPU available: hello") == 1, printed
    assert "Tip" not in printed and "litlogger" not in printed


def _trainer(epoch: int, metrics: dict, lr: float = 1e-3) -> SimpleNamespace:
    return SimpleNamespace(callback_metrics=metrics, max_epochs=20, current_epoch=epoch,
                           optimizers=[SimpleNamespace(param_groups=[{"lr": lr}])],
                           sanity_checking=False, is_global_zero=True)


def test_epoch_line_has_mean_train_loss_val_loss_wer_lr_elapsed() -> None:
    cb = EpochLines()
    t = _trainer(2, {"val_loss": 1.25, "val_wer": 42.5}, lr=3e-4)
    cb.on_train_epoch_start(t, None)
    for loss in (2.0, 4.0, float("nan")):  # a non-finite step does not poison the mean
        cb.on_train_batch_end(t, None, {"loss": loss}, None, 0)
    line = cb.line(t)
    assert line.startswith("epoch  3/20  train loss 3.000  val loss 1.250  val WER 42.50%  lr 3.0e-04  elapsed ")
    cb.on_train_epoch_start(t, None)  # the next epoch starts its own mean; no validation yet
    assert "train loss -  val loss -  val WER -" in cb.line(_trainer(3, {"val_wer": math.nan}))


def test_train_without_progress_bar_prints_one_line_per_epoch(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    from asr_tune.data.synth import build_synth_corpus

    build_synth_corpus(tmp_path / "c", n_utterances=30, progress=False)
    code = main(["train", str(ROOT / "configs" / "ci_search_tiny.yaml"), "--no-test",
                 "--set", f"trainer.output_dir={tmp_path / 'run'}", "--set", "trainer.max_epochs=2",
                 "--set", "trainer.progress_bar=false",
                 *[f"--set=data.{s}={tmp_path}/c/{s}.jsonl" for s in ("train", "dev", "test")]])
    assert code == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch ")]
    assert [ln.split("  ")[0] for ln in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("train loss" in ln and "val WER" in ln and " lr " in ln and "elapsed" in ln for ln in lines)
