"""Report rounds through the real trial function (no Ray): a report every N optimizer steps with
val_wer and a checkpoint, the searchers' budget in reports, and clean steps without dropout."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from asr_tune.config import load_config
from asr_tune.errors import ConfigError
from tests.conftest import TINY_SR as SR, tiny_word_corpus


def _cfg(tmp: Path, **extra):
    c = tiny_word_corpus(tmp)
    return load_config(None, {
        "data.train": c["train"], "data.dev": c["dev"], "data.test": c["dev"], "data.sample_rate": SR,
        "data.synth_if_missing": False, "data.batch_size": 2, "features.n_mels": 16,
        "features.vtlp": 0.1, "tokenizer.kind": "word",
        "model.d_model": 16, "model.num_layers": 1, "model.num_heads": 2, "model.ffn_mult": 1,
        "model.conv_kernel": 3, "model.dropout": 0.3, "trainer.max_epochs": 100, "trainer.max_steps": 8,
        "trainer.early_stopping_patience": 0, "trainer.threads": 1, **extra})


def test_reports_every_n_steps_with_val_wer_and_checkpoint(tmp_path: Path) -> None:
    from asr_tune.training.run import report_budget
    from asr_tune.tuning.trial import CKPT_FILE, _fit

    cfg = _cfg(tmp_path, **{"trainer.report_every_steps": 2, "trainer.clean_steps": 3})
    reports = []

    def report(metrics: dict, ckpt_dir: str | None) -> None:
        assert ckpt_dir and (Path(ckpt_dir) / CKPT_FILE).is_file()
        reports.append(metrics)

    dropout_seen: list[float] = []

    class Probe(L.Callback):
        def on_train_batch_end(self, trainer, module, *args) -> None:
            dropout_seen.append(next(m.p for m in module.model.modules() if isinstance(m, torch.nn.Dropout)))

    import asr_tune.training.run as run

    real = run.standard_callbacks
    try:
        run.standard_callbacks = lambda c, d: real(c, d) + [Probe()]
        _fit(cfg, report, None)
    finally:
        run.standard_callbacks = real
    assert [r["global_step"] for r in reports] == [2, 4, 6, 8]
    assert all("val_wer" in r and "val_loss" in r for r in reports)
    assert reports[0]["epoch"] < reports[-1]["epoch"] <= 2.0  # 6 batches per epoch: fractional epochs
    assert report_budget(cfg) == 4
    assert dropout_seen[:3] == [0.0, 0.0, 0.0] and set(dropout_seen[3:]) == {0.3}


def test_report_rounds_need_a_step_budget() -> None:
    with pytest.raises(ConfigError, match="max_steps"):
        load_config(None, {"trainer.report_every_steps": 10})
    with pytest.raises(ConfigError, match="not both"):
        load_config(None, {"trainer.report_every_steps": 10, "trainer.report_every_audio_s": 60,
                           "trainer.max_steps": 100})


def test_audio_interval_counts_training_audio(tmp_path: Path) -> None:
    from asr_tune.training.run import prepare, report_budget

    cfg = _cfg(tmp_path, **{"trainer.report_every_audio_s": 2.6, "data.batch_size": 0,
                            "data.batch_seconds": 1.4})
    prep = prepare(cfg)
    audio, batches = prep.datamodule.train_sampler().epoch_audio_s()
    assert prep.report_every_batches == max(1, round(2.6 / (audio / batches)))
    assert report_budget(cfg, prep) == -(-8 // prep.report_every_batches)


def test_search_pins_mix_paths(tmp_path: Path, monkeypatch) -> None:
    from asr_tune.tuning.runner import _absolute_data_paths

    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, {"data.train_mix": [{"path": "rel/mix.jsonl", "weight": 0.5}],
                             "features.cache_dir": "cache"})
    out = _absolute_data_paths(cfg)
    assert out.data.train_mix[0].path == str(tmp_path / "rel" / "mix.jsonl")
    assert out.features.cache_dir == str(tmp_path / "cache")
