"""An interrupted ``train`` keeps the checkpoints it had saved (beside the output folder), while a
previous run in ``trainer.output_dir`` stays as it was."""
from __future__ import annotations

from pathlib import Path

import pytest

from asr_tune.config import load_config
from tests.conftest import TINY_SR, tiny_word_corpus


def test_interrupted_train_keeps_its_checkpoints(tmp_path: Path, monkeypatch) -> None:
    from asr_tune.model.lightning_module import ASRModule
    from asr_tune.training.run import train

    c = tiny_word_corpus(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("previous run\n")
    cfg = load_config(None, {
        "data.train": c["train"], "data.dev": c["dev"], "data.test": c["dev"], "data.sample_rate": TINY_SR,
        "data.synth_if_missing": False, "data.batch_size": 2, "features.n_mels": 16, "tokenizer.kind": "word",
        "model.d_model": 16, "model.num_layers": 1, "model.num_heads": 2, "model.ffn_mult": 1,
        "model.conv_kernel": 3, "trainer.max_epochs": 100, "trainer.max_steps": 20,
        "trainer.report_every_steps": 2, "trainer.early_stopping_patience": 0, "trainer.threads": 1,
        "trainer.progress_bar": False, "trainer.output_dir": str(out)})
    real = ASRModule.training_step

    def step(self, batch, i):
        if self.global_step >= 5:
            raise KeyboardInterrupt
        return real(self, batch, i)

    monkeypatch.setattr(ASRModule, "training_step", step)
    with pytest.raises((KeyboardInterrupt, SystemExit)):  # Lightning turns Ctrl-C into exit(1)
        train(cfg, evaluate_test=False)
    assert (out / "config.yaml").read_text() == "previous run\n"
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("run.incomplete-")]
    assert len(kept) == 1 and (kept[0] / "checkpoints" / "best.ckpt").is_file()
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]
