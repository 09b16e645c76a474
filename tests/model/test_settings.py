"""Settings that used to be literals: the checkpoint/early-stopping monitor follows ``search.metric``,
the one-cycle warm-up share is clamped by one named range (fast, no training)."""
from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from asr_tune.config import ExperimentConfig
from asr_tune.model.lightning_module import ONECYCLE_PCT_START, onecycle_pct_start
from asr_tune.training.run import standard_callbacks


@pytest.mark.parametrize("metric,mode", [("val_wer", "min"), ("val_loss", "min"), ("val_loss", "max")])
def test_checkpoint_and_early_stopping_monitor_search_metric(metric: str, mode: str, tmp_path: Path) -> None:
    cfg = ExperimentConfig().with_overrides({"search.metric": metric, "search.mode": mode,
                                             "trainer.early_stopping_patience": 3})
    cbs = standard_callbacks(cfg, tmp_path)
    ckpt = next(c for c in cbs if isinstance(c, ModelCheckpoint))
    stop = next(c for c in cbs if isinstance(c, EarlyStopping))
    assert (ckpt.monitor, ckpt.mode) == (metric, mode)
    assert stop.monitor == metric and stop.patience == 3
    assert stop.mode == mode


def test_onecycle_pct_start_is_the_warmup_share_clamped() -> None:
    low, high = ONECYCLE_PCT_START
    assert onecycle_pct_start(100, 1000) == pytest.approx(0.1)
    assert onecycle_pct_start(0, 1000) == low
    assert onecycle_pct_start(5000, 1000) == high
    assert onecycle_pct_start(10, 0) == high  # no step estimate yet: still a valid share
    assert 0 < low < high < 1
