"""Refusals, inputs: audio, manifests and YAML a careless user hands over. Bad audio in train/dev
is refused before the first step (or skipped with a warning under --skip-bad-utterances); wrong
manifest field types, non-UTF-8 text, empty or duplicate-key YAML are one line naming file:line.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from refusal_helpers import FSDD, fsdd_manifest, refuse, save_checkpoint, snapshot, tiny_module, tiny_train_yaml

from asr_tune.cli import main


def _bad_audio(tmp_path: Path, kind: str) -> tuple[Path, float, str]:
    """(file, declared duration, what the error says) for one kind of bad training audio."""
    src = FSDD / "audio" / "0_george_10.flac"
    if kind == "truncated_flac":
        bad = tmp_path / "cut.flac"
        bad.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
        return bad, sf.info(str(bad)).duration, "cannot decode audio"
    if kind == "nan_samples":
        bad = tmp_path / "nan.wav"
        x = np.zeros(4000, dtype=np.float32)
        x[1000] = np.nan
        sf.write(str(bad), x, 8000, subtype="FLOAT")
        return bad, 0.5, "NaN/inf"
    return src, 60.0, "disagrees with the audio header"  # a 0.7-s file declared as 60 s


@pytest.mark.parametrize("kind", ["truncated_flac", "nan_samples", "duration_vs_header"])
def test_bad_training_audio_is_refused_before_the_first_step(tmp_path: Path, capsys, monkeypatch, kind) -> None:
    from asr_tune.model.lightning_module import ASRModule

    bad, duration, says = _bad_audio(tmp_path, kind)
    train = fsdd_manifest(tmp_path / "train.jsonl", n=6, audio_filepath=str(bad), duration=duration)
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("the previous run's config\n")
    before = snapshot(out)
    steps: list[int] = []
    monkeypatch.setattr(ASRModule, "training_step", lambda self, b, i: steps.append(i))
    refuse(["train", tiny_train_yaml(tmp_path, out, train)], capsys, f"{train}:1", str(bad), says)
    assert steps == []
    assert snapshot(out) == before


def test_skip_bad_utterances_on_train_skips_with_a_warning(tmp_path: Path, capsys, caplog) -> None:
    bad, duration, _ = _bad_audio(tmp_path, "nan_samples")
    train = fsdd_manifest(tmp_path / "train.jsonl", n=6, audio_filepath=str(bad), duration=duration)
    out = tmp_path / "run"
    assert main(["train", str(tiny_train_yaml(tmp_path, out, train)), "--no-test", "--skip-bad-utterances"]) == 0
    assert "skipped 1 bad utterance" in caplog.text + capsys.readouterr().err
    assert (out / "checkpoints").is_dir()


@pytest.mark.parametrize("field,value,says", [
    ("text", None, "'text' must be a string, got null"),
    ("audio_filepath", 123, "'audio_filepath' must be a string, got int"),
    ("duration", float("nan"), "duration must be > 0, finite and at most 86400 s, got nan"),
    ("duration", 1e6, "duration must be > 0, finite and at most 86400 s, got 1000000.0"),
    ("duration", "1.5s", "duration '1.5s' is not a number (got str)"),
])
def test_manifest_fields_of_the_wrong_type_name_file_and_line(tmp_path: Path, capsys, field, value, says) -> None:
    ckpt = save_checkpoint(tiny_module(), tmp_path / "model.ckpt")
    rows = fsdd_manifest(tmp_path / "ok.jsonl", n=3).read_text().splitlines()
    row = json.loads(rows[1])
    row[field] = value
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join([rows[0], json.dumps(row), rows[2]]) + "\n")
    out = tmp_path / "wer.json"
    out.write_text("previous")
    refuse(["evaluate", ckpt, "--data", manifest, "--out", out], capsys, f"{manifest}:2", says)
    assert out.read_text() == "previous"


def _latin1(text: str) -> bytes:
    return text.encode("latin-1")


@pytest.mark.parametrize("what", ["yaml", "manifest", "trans_txt"])
def test_non_utf8_text_names_the_file_and_byte_offset(tmp_path: Path, capsys, what: str) -> None:
    ckpt = save_checkpoint(tiny_module(), tmp_path / "model.ckpt")
    if what == "yaml":
        bad = tmp_path / "cfg.yaml"
        bad.write_bytes(_latin1("model:\n  num_layers: 2  # café\n"))
        argv, line, offset = ["train", bad], 2, len(b"model:\n  num_layers: 2  # caf")
    elif what == "manifest":
        good = fsdd_manifest(tmp_path / "ok.jsonl", n=2).read_bytes()
        bad = tmp_path / "m.jsonl"
        row = _latin1(json.dumps({"audio_filepath": "a.flac", "duration": 1.0, "text": "x", "speaker": "s",
                                  "id": "y"}, ensure_ascii=False).replace('"x"', '"zéro"'))
        bad.write_bytes(good + row + b"\n")
        argv, line, offset = ["evaluate", ckpt, "--data", bad], 3, len(good) + row.index(b"\xe9")
    else:
        chapter = tmp_path / "libri" / "19" / "198"
        chapter.mkdir(parents=True)
        (chapter / "19-198-0000.flac").write_bytes((FSDD / "audio" / "0_george_0.flac").read_bytes())
        bad = chapter / "19-198.trans.txt"
        bad.write_bytes(_latin1("19-198-0000 ZÉRO\n"))
        argv, line, offset = ["evaluate", ckpt, "--data", tmp_path / "libri"], 1, len("19-198-0000 Z")
    refuse(argv, capsys, f"{bad}:{line}", "not UTF-8", f"byte offset {offset}")


@pytest.mark.parametrize("text,says", [
    ("", "is empty (or only comments)"),
    ("# tuned later\n# data: {train: x}\n", "is empty (or only comments)"),
    ("model:\n  d_model: 64\ntrainer: {max_epochs: 3}\nmodel:\n  d_model: 32\n", "duplicate key 'model'"),
    ("model:\n  d_model: 64\n  d_model: 32\n", "duplicate key 'd_model'"),
])
def test_empty_and_duplicate_key_yaml_are_errors(tmp_path: Path, capsys, monkeypatch, text, says) -> None:
    monkeypatch.chdir(tmp_path)  # the all-default config would build a corpus here
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(text)
    refuse(["train", cfg], capsys, str(cfg), says)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml"]


@pytest.mark.parametrize("rate", ["1", "200000"])
def test_corpus_synth_sample_rate_out_of_range_is_one_line(tmp_path: Path, capsys, rate: str) -> None:
    out = tmp_path / "corpus"
    refuse(["corpus", "synth", "--out", out, "--utterances", 3, "--sample-rate", rate], capsys,
           f"--sample-rate {rate}", "Hz")
    assert list(tmp_path.iterdir()) == []
