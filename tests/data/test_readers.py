"""Manifest and LibriSpeech readers, resampling, and bad-input errors naming the file/line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr_tune.config import DataConfig
from asr_tune.data.audio import load_audio
from asr_tune.data.datamodule import validated_rows
from asr_tune.data.manifest import Utterance, load_corpus, read_manifest, write_manifest
from asr_tune.errors import DataError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def tone(path: Path, sr: int = 16000, seconds: float = 0.5, freq: float = 440.0) -> Path:
    t = np.arange(int(sr * seconds)) / sr
    sf.write(str(path), 0.3 * np.sin(2 * np.pi * freq * t), sr, subtype="PCM_16")
    return path


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def row(i: int, audio: str = "a.flac", **kw) -> dict:
    return {"audio_filepath": audio, "duration": 0.5, "text": "one two", "speaker": "s1", "id": f"u{i}", **kw}


def test_manifest_relative_paths_resolve(tmp_path: Path) -> None:
    tone(tmp_path / "a.flac")
    rows = read_manifest(write_rows(tmp_path / "m.jsonl", [row(0)]))
    assert rows[0].audio_filepath == str((tmp_path / "a.flac").resolve())
    assert rows[0].text == "one two" and rows[0].speaker == "s1"


@pytest.mark.parametrize("bad, message", [
    ({"duration": 0}, "duration must be > 0"),
    ({"text": "  "}, "empty transcript"),
    ({"duration": "long"}, "not a number"),
])
def test_manifest_bad_values_name_the_line(tmp_path: Path, bad: dict, message: str) -> None:
    path = write_rows(tmp_path / "m.jsonl", [row(0), row(1, **bad)])
    with pytest.raises(DataError, match=rf"m.jsonl:2: .*{message}"):
        read_manifest(path)


def test_manifest_missing_field_and_bad_json(tmp_path: Path) -> None:
    r = row(0)
    del r["speaker"]
    with pytest.raises(DataError, match=r"m.jsonl:1: missing field\(s\) speaker"):
        read_manifest(write_rows(tmp_path / "m.jsonl", [r]))
    (tmp_path / "j.jsonl").write_text('{"audio_filepath": \n')
    with pytest.raises(DataError, match=r"j.jsonl:1: not valid JSON"):
        read_manifest(tmp_path / "j.jsonl")


def test_write_manifest_is_atomic(tmp_path: Path) -> None:
    def rows():
        yield Utterance("a.flac", 1.0, "one", "s", "u0")
        raise RuntimeError("synthesis died")

    with pytest.raises(RuntimeError):
        write_manifest(tmp_path / "train.jsonl", rows())
    assert not (tmp_path / "train.jsonl").exists()
    assert not list(tmp_path.glob("*partial*"))


def test_librispeech_layout(tmp_path: Path) -> None:
    chap = tmp_path / "dev" / "84" / "121123"
    chap.mkdir(parents=True)
    tone(chap / "84-121123-0000.flac", seconds=0.4)
    tone(chap / "84-121123-0001.flac", seconds=0.6)
    (chap / "84-121123.trans.txt").write_text("84-121123-0000 GO DO YOU HEAR\n84-121123-0001 BUT IN LESS\n")
    rows = load_corpus(tmp_path / "dev")
    assert [r.text for r in rows] == ["go do you hear", "but in less"]
    assert rows[0].speaker == "84" and rows[1].duration == pytest.approx(0.6)


def test_librispeech_missing_audio_names_transcript_line(tmp_path: Path) -> None:
    chap = tmp_path / "84" / "1"
    chap.mkdir(parents=True)
    (chap / "84-1.trans.txt").write_text("84-1-0000 HELLO\n")
    with pytest.raises(DataError, match=r"84-1.trans.txt:1: no audio file 84-1-0000.flac"):
        load_corpus(tmp_path)


def test_resampling_changes_length_not_pitch(tmp_path: Path) -> None:
    wav = load_audio(tone(tmp_path / "t.flac", sr=8000, seconds=1.0, freq=500.0), 16000)
    assert wav.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(wav.numpy()))
    assert abs(np.argmax(spectrum) - 500) <= 2  # 1 Hz bins at 16 kHz over 1 s


def test_bad_audio_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "corrupt.flac").write_bytes(b"not audio at all")
    sf.write(str(tmp_path / "empty.wav"), np.zeros(0), 16000)
    with pytest.raises(DataError, match="corrupt.flac: cannot decode"):
        load_audio(tmp_path / "corrupt.flac", 16000)
    with pytest.raises(DataError, match="empty.wav: audio file has zero samples"):
        load_audio(tmp_path / "empty.wav", 16000)
    with pytest.raises(DataError, match="missing.flac: audio file not found"):
        load_audio(tmp_path / "missing.flac", 16000)


def test_validation_before_training_and_skip_bad(tmp_path: Path) -> None:
    tone(tmp_path / "good.flac")
    (tmp_path / "bad.flac").write_bytes(b"junk")
    m = write_rows(tmp_path / "m.jsonl", [row(0, "good.flac"), row(1, "bad.flac")])
    with pytest.raises(DataError, match="bad.flac: cannot decode"):
        validated_rows(str(m), DataConfig(), "train")
    rows = validated_rows(str(m), DataConfig(skip_bad_utterances=True), "train")
    assert [r.id for r in rows] == ["u0"]


def test_wrong_sample_rate_is_rejected_when_pinned(tmp_path: Path) -> None:
    tone(tmp_path / "a.flac", sr=22050)
    m = write_rows(tmp_path / "m.jsonl", [row(0)])
    with pytest.raises(DataError, match="sample rate 22050 Hz, expected data.source_sample_rate=16000"):
        validated_rows(str(m), DataConfig(source_sample_rate=16000), "train")


@pytest.mark.skipif(not (SHARED / "ljspeech_sample").is_dir(), reason="../shared/data/ljspeech_sample absent")
def test_real_speech_22k_resampled_to_16k() -> None:
    rows = read_manifest(SHARED / "ljspeech_sample" / "manifest.jsonl")
    assert len(rows) == 32
    wav = load_audio(rows[0].audio_filepath, 16000)
    assert abs(len(wav) / 16000 - rows[0].duration) < 0.01
