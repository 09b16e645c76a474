"""Builders of the embedded synthetic corpus (eSpeak NG) and the FSDD connected-digit corpus."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import soundfile as sf

from asr_tune.data import digits as digits_mod
from asr_tune.data import synth as synth_mod
from asr_tune.data.audio import load_audio
from asr_tune.data.digits import build_digit_corpus
from asr_tune.data.manifest import normalize_text, read_manifest
from asr_tune.data.synth import VOCABULARY, build_synth_corpus
from asr_tune.errors import DataError

FSDD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fsdd"
SPLITS = ("train", "dev", "test")
N_SYNTH = 30


def _digest(out: dict[str, Path]) -> str:
    """md5 over the manifests and every audio file they name (in manifest order)."""
    h = hashlib.md5()
    for split in SPLITS:
        h.update(out[split].read_bytes())
        for row in read_manifest(out[split]):
            h.update(Path(row.audio_filepath).read_bytes())
    return h.hexdigest()


def _check_rows(out: dict[str, Path], sample_rate: int) -> dict[str, list]:
    rows = {split: read_manifest(out[split]) for split in SPLITS}
    for split, split_rows in rows.items():
        assert out[split] == out["train"].parent / f"{split}.jsonl"
        for row in split_rows:
            info = sf.info(row.audio_filepath)
            assert info.samplerate == sample_rate
            assert info.format == "FLAC"
            assert row.duration == pytest.approx(info.frames / info.samplerate, abs=1e-6)
            assert row.text == normalize_text(row.text)
    # a few decode through the project's audio loader, with the rate the manifest promises
    for row in rows["train"][:3] + rows["test"][:2]:
        wav = load_audio(row.audio_filepath, sample_rate, expected_rate=sample_rate)
        assert wav.numel() == round(row.duration * sample_rate)
        assert float(wav.abs().max()) > 0.01  # not silence
    return rows


@pytest.fixture(scope="module")
def synth_corpus(tmp_path_factory) -> dict[str, Path]:
    return build_synth_corpus(tmp_path_factory.mktemp("synth") / "corpus", n_utterances=N_SYNTH,
                              seed=0, progress=False)


# ---------------------------------------------------------------------------------------------
# synthetic corpus
# ---------------------------------------------------------------------------------------------

def test_synth_manifests_audio_and_vocabulary(synth_corpus):
    rows = _check_rows(synth_corpus, 16000)
    assert {s: len(r) for s, r in rows.items()} == {"train": 24, "dev": 3, "test": 3}
    words = {w for split_rows in rows.values() for r in split_rows for w in r.text.split()}
    assert words <= VOCABULARY
    assert len(VOCABULARY) == 40
    for split_rows in rows.values():
        for r in split_rows:
            assert 0.2 < r.duration < 8.0
            assert "+" in r.speaker  # language+variant, e.g. "en-us+m3"
    ids = [r.id for split_rows in rows.values() for r in split_rows]
    assert len(ids) == len(set(ids))


def test_synth_test_speakers_disjoint(synth_corpus):
    rows = {split: read_manifest(synth_corpus[split]) for split in SPLITS}
    variants = {s: {r.speaker.split("+", 1)[1] for r in rows[s]} for s in SPLITS}
    assert not variants["test"] & (variants["train"] | variants["dev"])
    assert not variants["dev"] & variants["train"]
    speakers = {s: {r.speaker for r in rows[s]} for s in SPLITS}
    assert not speakers["test"] & (speakers["train"] | speakers["dev"])

    info = json.loads((synth_corpus["train"].parent / "corpus.json").read_text())
    assert info["params"]["n_utterances"] == N_SYNTH and info["params"]["seed"] == 0
    planned = {s: set(info["splits"][s]["variants"]) for s in SPLITS}
    assert not planned["test"] & (planned["train"] | planned["dev"])
    for s in SPLITS:
        assert variants[s] <= planned[s]
        assert set(info["splits"][s]["speakers"]) == speakers[s]


def test_synth_is_deterministic(synth_corpus, tmp_path, monkeypatch):
    # same seed again, rendered by two worker subprocesses instead of in-process: byte-identical
    monkeypatch.setattr(synth_mod, "_n_workers", lambda n_tasks: 2)
    again = build_synth_corpus(tmp_path / "again", n_utterances=N_SYNTH, seed=0, progress=False)
    assert _digest(again) == _digest(synth_corpus)
    assert json.loads((tmp_path / "again" / "corpus.json").read_text())["workers"] == 2

    monkeypatch.undo()
    other = build_synth_corpus(tmp_path / "other", n_utterances=N_SYNTH, seed=1, progress=False)
    texts = [r.text for r in read_manifest(other["train"])]
    assert texts != [r.text for r in read_manifest(synth_corpus["train"])]


def test_synth_interrupted_build_leaves_no_manifest(tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    out.mkdir()
    (out / "train.jsonl").write_text("stale\n")  # from an earlier build: kept as it was (issue 14)

    def interrupted(items, total, desc, enabled):
        for i, item in enumerate(items):
            if i == 5:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(synth_mod, "_progress", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_synth_corpus(out, n_utterances=12, seed=0, progress=False)
    # built in a staging sibling (asr_tune.staging): the interrupted build leaves the old folder as it was
    assert sorted(p.name for p in out.iterdir()) == ["train.jsonl"]
    assert (out / "train.jsonl").read_text() == "stale\n"
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]


def test_synth_failure_while_writing_manifests_removes_them(tmp_path, monkeypatch):
    real = synth_mod.write_manifest

    def fail_on_dev(path, rows, relative=True):
        if Path(path).name == "dev.jsonl":
            raise OSError("disk full")
        return real(path, rows, relative)

    monkeypatch.setattr(synth_mod, "write_manifest", fail_on_dev)
    with pytest.raises(OSError):
        build_synth_corpus(tmp_path, n_utterances=6, seed=0, progress=False)
    assert not (tmp_path / "train.jsonl").exists()
    assert not (tmp_path / "corpus.json").exists()


def test_synth_without_espeak_is_a_data_error(tmp_path, monkeypatch):
    import espeakng_loader

    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: str(tmp_path / "missing.so"))
    with pytest.raises(DataError, match="eSpeak NG library not found"):
        build_synth_corpus(tmp_path / "a", n_utterances=6, progress=False)

    broken = tmp_path / "libespeak-ng.so"
    broken.write_bytes(b"not a shared library")
    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: str(broken))
    with pytest.raises(DataError, match="cannot load eSpeak NG library"):
        build_synth_corpus(tmp_path / "b", n_utterances=6, progress=False)
    assert not (tmp_path / "b" / "train.jsonl").exists()


def test_synth_digits_mode(tmp_path, monkeypatch):
    asked = []  # what the renderer asks eSpeak NG for: voice, rate, pitch, pitch range, word gap
    real_synth = synth_mod.Espeak.synth

    def recording_synth(self, text, voice, rate, pitch, prange, wordgap, seed):
        asked.append((voice, rate, pitch, prange, wordgap))
        return real_synth(self, text, voice, rate, pitch, prange, wordgap, seed)

    monkeypatch.setattr(synth_mod.Espeak, "synth", recording_synth)
    out = build_synth_corpus(tmp_path / "digits", n_utterances=N_SYNTH, seed=0, progress=False,
                             mode="digits")
    monkeypatch.undo()
    rows = _check_rows(out, 8000)  # 8 kHz by default, like FSDD
    assert {s: len(r) for s, r in rows.items()} == {"train": 24, "dev": 3, "test": 3}
    digit_words = set(synth_mod.DIGIT_WORDS)
    lengths = set()
    for split_rows in rows.values():
        for r in split_rows:
            words = r.text.split()
            assert set(words) <= digit_words and 1 <= len(words) <= 7, r.text
            assert r.text == normalize_text(r.text)
            lengths.add(len(words))
            assert r.id.startswith("synthdigits-")
    assert len(lengths) >= 4
    variants = {s: {r.speaker.split("+", 1)[1] for r in rows[s]} for s in SPLITS}
    assert not variants["test"] & (variants["train"] | variants["dev"])
    assert not variants["dev"] & variants["train"]
    info = json.loads((tmp_path / "digits" / "corpus.json").read_text())
    assert info["kind"] == "synth_digits" and info["params"]["mode"] == "digits"
    assert info["vocabulary"] == sorted(digit_words)
    # many voices; speaking rate, pitch and word gaps vary per utterance, within eSpeak's safe ranges
    asked = asked[-N_SYNTH:]  # the utterances (after any probe the engine makes when it starts)
    assert len(asked) == N_SYNTH and len({a[0] for a in asked}) >= 15
    for k, (lo, hi) in enumerate([(80, 220), (10, 90), (10, 90), (0, 20)], start=1):
        values = [a[k] for a in asked]
        assert lo <= min(values) and max(values) <= hi
        assert max(values) - min(values) >= (hi - lo) / 2 and len(set(values)) >= 5

    again = build_synth_corpus(tmp_path / "again", n_utterances=N_SYNTH, seed=0, progress=False,
                               mode="digits", sample_rate=16000)
    assert [r.text for r in read_manifest(again["train"])] == [r.text for r in rows["train"]]
    assert sf.info(read_manifest(again["test"])[0].audio_filepath).samplerate == 16000
    with pytest.raises(DataError, match="unknown synth mode 'words'"):
        build_synth_corpus(tmp_path / "bad", n_utterances=N_SYNTH, progress=False, mode="words")


# ---------------------------------------------------------------------------------------------
# FSDD connected digits
# ---------------------------------------------------------------------------------------------

needs_fsdd = pytest.mark.skipif(not (FSDD / "manifest.jsonl").is_file(),
                                reason=f"FSDD not found at {FSDD} (shared data folder absent)")
DIGIT_SIZES = {"n_train": 40, "n_dev": 10, "n_test": 15}


@pytest.fixture(scope="module")
def digit_corpus(tmp_path_factory) -> dict[str, Path]:
    if not (FSDD / "manifest.jsonl").is_file():
        pytest.skip(f"FSDD not found at {FSDD} (shared data folder absent)")
    return build_digit_corpus(FSDD, tmp_path_factory.mktemp("digits") / "corpus", seed=0,
                              progress=False, **DIGIT_SIZES)


@pytest.mark.shared_data
@needs_fsdd
def test_digits_manifests_speakers_and_lengths(digit_corpus):
    rows = _check_rows(digit_corpus, 8000)
    assert {s: len(r) for s, r in rows.items()} == {"train": 40, "dev": 10, "test": 15}
    assert {r.speaker for r in rows["test"]} == {"yweweler"}
    assert "yweweler" not in {r.speaker for s in ("train", "dev") for r in rows[s]}
    digit_words = set(synth_mod.DIGIT_WORDS)
    lengths = set()
    for split_rows in rows.values():
        for r in split_rows:
            words = r.text.split()
            assert 1 <= len(words) <= 7
            assert set(words) <= digit_words
            lengths.add(len(words))
            # each digit is >= 0.1 s of speech, each of the len+1 gaps 50..250 ms
            assert 0.1 * len(words) + 0.05 * (len(words) + 1) < r.duration < 1.5 * len(words) + 0.25 * (len(words) + 1)
    assert len(lengths) >= 4  # lengths vary

    info = json.loads((digit_corpus["train"].parent / "corpus.json").read_text())
    assert info["sample_rate"] == 8000
    assert info["splits"]["test"]["speakers"] == ["yweweler"]
    assert info["params"]["n_train"] == 40


@pytest.mark.shared_data
@needs_fsdd
def test_digits_deterministic(digit_corpus, tmp_path):
    again = build_digit_corpus(FSDD, tmp_path / "again", seed=0, progress=False, **DIGIT_SIZES)
    assert _digest(again) == _digest(digit_corpus)


@pytest.mark.shared_data
@needs_fsdd
def test_digits_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="known speakers: george, jackson, lucas, nicolas, yweweler"):
        build_digit_corpus(FSDD, tmp_path, test_speakers=("alice",), progress=False)
    with pytest.raises(DataError, match="none left for train/dev"):
        build_digit_corpus(FSDD, tmp_path, progress=False,
                           test_speakers=("george", "jackson", "lucas", "nicolas", "yweweler"))
    assert not list(tmp_path.glob("*.jsonl"))


def test_digits_missing_source(tmp_path):
    with pytest.raises(DataError, match="FSDD source not found"):
        build_digit_corpus(tmp_path / "nope", tmp_path / "out", progress=False)


@pytest.mark.shared_data
@needs_fsdd
def test_digits_interrupted_build_leaves_no_manifest(tmp_path, monkeypatch):
    def interrupted(items, total, desc, enabled):
        for i, item in enumerate(items):
            if i == 7:
                raise RuntimeError("killed")
            yield item

    monkeypatch.setattr(digits_mod, "_progress", interrupted)
    with pytest.raises(RuntimeError, match="killed"):
        build_digit_corpus(FSDD, tmp_path, progress=False, **DIGIT_SIZES)
    assert not any((tmp_path / f"{s}.jsonl").exists() for s in SPLITS)
    assert not (tmp_path / "corpus.json").exists()


@pytest.mark.shared_data
@needs_fsdd
def test_digits_dev_speakers_are_disjoint(tmp_path):
    out = build_digit_corpus(FSDD, tmp_path / "corpus", test_speakers=("yweweler",),
                             dev_speakers=("lucas",), seed=0, progress=False, **DIGIT_SIZES)
    rows = {split: read_manifest(out[split]) for split in SPLITS}
    assert {s: len(r) for s, r in rows.items()} == {"train": 40, "dev": 10, "test": 15}
    speakers = {s: {r.speaker for r in rows[s]} for s in SPLITS}
    assert speakers["test"] == {"yweweler"}
    assert speakers["dev"] == {"lucas"}
    assert speakers["train"] <= {"george", "jackson", "nicolas"} and len(speakers["train"]) >= 2
    info = json.loads((tmp_path / "corpus" / "corpus.json").read_text())
    assert info["params"]["dev_speakers"] == ["lucas"]
    assert info["splits"]["dev"]["speakers"] == ["lucas"]
    assert info["splits"]["train"]["speakers"] == ["george", "jackson", "nicolas"]
    # lucas's recordings all go to dev (50 per digit in FSDD), none held back for train
    assert info["splits"]["dev"]["source_recordings"] == 500


@pytest.mark.shared_data
@needs_fsdd
@pytest.mark.parametrize("test_spk, dev_spk, message", [
    (("yweweler",), ("alice",), "unknown dev speaker\\(s\\) alice; known speakers: george"),
    (("yweweler",), ("lucas", "yweweler"), "yweweler both in the test and the dev speakers"),
    (("george", "jackson"), ("lucas", "nicolas", "yweweler"), "none left for train "),
])
def test_digits_dev_speakers_bad_arguments(tmp_path, test_spk, dev_spk, message):
    with pytest.raises(DataError, match=message):
        build_digit_corpus(FSDD, tmp_path / "out", test_speakers=test_spk, dev_speakers=dev_spk,
                           progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.shared_data
@needs_fsdd
def test_digits_cli_dev_speaker_error_is_one_line(tmp_path, capsys):
    from asr_tune.cli import main

    rc = main(["corpus", "digits", "--src", str(FSDD), "--out", str(tmp_path / "out"),
               "--test-speakers", "lucas", "--dev-speakers", "lucas"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "lucas" in err
