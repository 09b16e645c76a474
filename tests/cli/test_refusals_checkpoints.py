"""Refusals, checkpoints: no code runs from a checkpoint, and a checkpoint that cannot give a working
model (weights vs. embedded config, missing tokenizer, NaN weights) is one line, not a traceback.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from refusal_helpers import evil_checkpoint, fsdd_manifest, refuse, save_checkpoint, snapshot, tiny_module

from asr_tune.errors import ConfigError


@pytest.mark.parametrize("command", ["evaluate", "quantize"])
def test_a_crafted_pickle_is_refused_and_never_runs(tmp_path: Path, capsys, command: str) -> None:
    marker = tmp_path / "PWNED"
    ckpt = evil_checkpoint(tmp_path / "evil.ckpt", marker)
    data = fsdd_manifest(tmp_path / "m.jsonl")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text('{"previous": true}')
    before = snapshot(out)
    argv = {"evaluate": ["evaluate", ckpt, "--data", data, "--out", out / "report.json"],
            "quantize": ["quantize", ckpt, "--calib", data, "--data", data, "--out", out]}[command]
    line = refuse(argv, capsys, str(ckpt), "refused", "exec")
    assert "never stores" in line
    assert not marker.exists()
    assert snapshot(out) == before


def test_a_restored_trial_refuses_a_crafted_pickle_before_any_work(tmp_path: Path) -> None:
    """The Tune restore path (``_fit`` with a checkpoint dir) reads the file weights-only, first."""
    from asr_tune.config import load_config
    from asr_tune.tuning.trial import CKPT_FILE, _fit

    marker = tmp_path / "PWNED"
    evil_checkpoint(tmp_path / CKPT_FILE, marker)
    cfg = load_config(None, {"data.train": str(tmp_path / "absent.jsonl"), "data.synth_if_missing": False})
    with pytest.raises(ConfigError, match="refused: the checkpoint references 'exec'"):
        _fit(cfg, lambda metrics, ckpt: None, str(tmp_path))
    assert not marker.exists()


def test_lightning_restore_is_weights_only(tmp_path: Path) -> None:
    """Even past our own read, Lightning's ``trainer.fit(ckpt_path=...)`` refuses the pickle."""
    import lightning as L

    from asr_tune.model.safe_load import allowed_globals

    marker = tmp_path / "PWNED"
    ckpt = evil_checkpoint(tmp_path / "evil.ckpt", marker)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, default_root_dir=str(tmp_path))
    with pytest.raises(Exception, match="Unsupported global"), allowed_globals():
        trainer.strategy.load_checkpoint(ckpt, weights_only=True)
    assert not marker.exists()
    source = (Path(__file__).resolve().parents[2] / "asr_tune/tuning/trial.py").read_text()
    assert "ckpt_path=ckpt_path, weights_only=True" in source


@pytest.mark.parametrize("damage", ["config_mismatch", "no_tokenizer", "nan_weights", "no_weights"])
def test_a_checkpoint_that_cannot_give_a_model_is_one_line(tmp_path: Path, capsys, damage: str) -> None:
    module = tiny_module()
    ckpt = tmp_path / "model.ckpt"
    expect = {"config_mismatch": "weights do not match the embedded config",
              "no_tokenizer": "lacks its tokenizer", "nan_weights": "NaN/inf",
              "no_weights": "has no weights"}[damage]
    if damage == "config_mismatch":
        save_checkpoint(module, ckpt, config=tiny_module(d_model=64).cfg.to_dict())
    elif damage == "no_tokenizer":
        save_checkpoint(module, ckpt, tokenizer=None)
    elif damage == "nan_weights":
        with torch.no_grad():
            module.model.ctc_head.weight[0, 0] = float("nan")
        save_checkpoint(module, ckpt)
    else:
        torch.save({"asr_tune": {"version": 1, "config": module.cfg.to_dict(),
                                 "tokenizer": module.tok.state()}}, ckpt)
    data = fsdd_manifest(tmp_path / "m.jsonl")
    out = tmp_path / "wer.json"
    out.write_text("previous")
    refuse(["evaluate", ckpt, "--data", data, "--out", out], capsys, str(ckpt), expect)
    assert out.read_text() == "previous"
