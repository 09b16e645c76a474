"""Refusals, runtime: a GPU asked for on a machine without one is one line before anything is
written; transcripts are normalised the same way in training and scoring, and text the model
cannot emit is warned about once.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from refusal_helpers import fsdd_manifest, refuse, save_checkpoint, tiny_module, tiny_train_yaml

from asr_tune.cli import main

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("value", ["gpu", "cuda"])
def test_gpu_without_cuda_is_one_line_before_anything_is_written(tmp_path: Path, capsys, value) -> None:
    out = tmp_path / "run"
    m = fsdd_manifest(tmp_path / "m.jsonl")
    cfg = tiny_train_yaml(tmp_path, out, m, dev=m)
    refuse(["train", cfg, "--set", f"trainer.accelerator={value}"], capsys, "trainer.accelerator", "no CUDA GPU")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl", "tiny.yaml"]


def _perfect_transcriber(style):
    """Stands in for the model: the right digit word for each FSDD file, written in ``style``."""
    def transcribe(module, rows, batch_seconds=60.0, device=None):
        return [style(WORDS[int(Path(r.audio_filepath).name.split("_")[0])]) for r in rows]
    return transcribe


def test_case_and_punctuation_score_the_same(tmp_path: Path, capsys, monkeypatch) -> None:
    import asr_tune.training.run as run

    ckpt = save_checkpoint(tiny_module(), tmp_path / "model.ckpt")
    lines = fsdd_manifest(tmp_path / "lower.jsonl", n=4).read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    upper = tmp_path / "upper.jsonl"
    upper.write_text("".join(json.dumps({**r, "text": r["text"].upper() + "!"}) + "\n" for r in rows))
    wers = {}
    for name, style in (("lower", str), ("upper", lambda w: f"{w.capitalize()}.")):
        monkeypatch.setattr(run, "transcribe_rows", _perfect_transcriber(style))
        out = tmp_path / f"{name}.json"
        assert main(["evaluate", str(ckpt), "--data", str(tmp_path / f"{name}.jsonl"), "--out", str(out)]) == 0
        wers[name] = json.loads(out.read_text())["wer"]
    assert wers == {"lower": 0.0, "upper": 0.0}


def test_training_transcripts_are_normalised_like_scoring(tmp_path: Path) -> None:
    from asr_tune.data.manifest import read_manifest

    rows = [json.loads(line) for line in fsdd_manifest(tmp_path / "m.jsonl", n=3).read_text().splitlines()]
    shouty = tmp_path / "shouty.jsonl"
    shouty.write_text("".join(json.dumps({**r, "text": f"“{r['text'].upper()}”, ok?"}) + "\n" for r in rows))
    assert [u.text for u in read_manifest(shouty)] == [f"{r['text']} ok" for r in rows]


def test_text_the_model_cannot_emit_is_warned_about_once(tmp_path: Path, capsys, caplog, monkeypatch) -> None:
    import asr_tune.training.run as run

    monkeypatch.setattr(run, "transcribe_rows", _perfect_transcriber(str))
    ckpt = save_checkpoint(tiny_module(), tmp_path / "model.ckpt")
    rows = [json.loads(line) for line in fsdd_manifest(tmp_path / "m.jsonl", n=3).read_text().splitlines()]
    rows[1]["text"] = "zéro 🙂"
    data = tmp_path / "accents.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for _ in range(2):
        assert main(["evaluate", str(ckpt), "--data", str(data)]) == 0
    warnings = [r.getMessage() for r in caplog.records if "cannot emit" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert str(data) in warnings[0] and "'é'" in warnings[0] and "1 of 3" in warnings[0]
