"""Connected-digit strings spliced from the Free Spoken Digit Dataset (FSDD).

FSDD has isolated digits ("zero" .. "nine") from a handful of speakers at 8 kHz. Each utterance built
here concatenates 1-7 recordings of ONE speaker, each trimmed a little at both ends, with short
random gaps of low-level noise between them (at the speaker's noise floor, so the joins are not
digital silence); the transcript is the digit words ("three seven one").

Splits: the test strings use only ``test_speakers``' recordings. Without ``dev_speakers``, train
and dev use the other speakers, dev drawing from a held-out ``dev_fraction`` of their recordings (per
speaker and digit), so no recording is shared between train and dev. With ``dev_speakers`` the
three splits are speaker-disjoint: dev strings use only the dev speakers' recordings, train all the
recordings of the remaining speakers (``dev_fraction`` is then unused). The source sample rate
(8 kHz) is kept.
Like the synthetic corpus, manifests are written only once all audio exists.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf

from asr_tune.data.manifest import Utterance, normalize_text, read_manifest
from asr_tune.data.synth import (CORPUS_ENTRIES, DIGIT_WORDS, _progress, _remove_stale, _write_manifests,
                                 trim_silence, write_flac)
from asr_tune.errors import DataError
from asr_tune.staging import builds_folder

_DIGIT_CHARS = {str(i): w for i, w in enumerate(DIGIT_WORDS)}


def _source_manifest(src: Path) -> Path:
    if src.is_dir():
        for name in ("manifest.jsonl", "manifest.json"):
            if (src / name).is_file():
                return src / name
        raise DataError(f"{src}: no manifest.jsonl in the FSDD folder")
    if src.is_file():
        return src
    raise DataError(f"{src}: FSDD source not found (expected a folder with manifest.jsonl)")


def source_speakers(src: str | Path) -> list[str]:
    """The speakers of the FSDD source at ``src`` (folder or manifest), sorted."""
    return sorted({r.speaker for r in read_manifest(_source_manifest(Path(src)))})


def _digit_word(text: str, where: str) -> str:
    word = normalize_text(text)
    word = _DIGIT_CHARS.get(word, word)
    if word not in DIGIT_WORDS:
        raise DataError(f"{where}: transcript {text!r} is not a single digit word")
    return word


class _Recordings:
    """Decodes source recordings on first use; all must share one sample rate."""

    def __init__(self) -> None:
        self.sample_rate = 0
        self._cache: dict[str, np.ndarray] = {}

    def get(self, path: str) -> np.ndarray:
        x = self._cache.get(path)
        if x is not None:
            return x
        try:
            x, sr = sf.read(path, dtype="float32", always_2d=True)
        except Exception as err:  # soundfile raises its own error types
            raise DataError(f"{path}: cannot decode audio ({err})") from None
        if x.shape[0] == 0:
            raise DataError(f"{path}: audio file has zero samples")
        if self.sample_rate and sr != self.sample_rate:
            raise DataError(f"{path}: sample rate {sr} Hz, other recordings are {self.sample_rate} Hz")
        self.sample_rate = sr
        x = x.mean(axis=1)
        x = trim_silence(x, sr, threshold_db=-35.0, margin_s=0.03)
        self._cache[path] = x
        return x


def _noise_floor(x: np.ndarray, sample_rate: int) -> float:
    hop = max(1, sample_rate // 100)
    n = len(x) // hop
    if n < 1:
        return 0.0
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1))
    return float(np.min(rms))


def _splice(pieces: list[np.ndarray], gaps: list[int], floor: float, rng: np.random.Generator,
            sample_rate: int) -> np.ndarray:
    """gap, piece, gap, piece, ..., gap -- gaps as noise at ``floor`` RMS, 5 ms fades at the joins."""
    fade = max(1, int(0.005 * sample_rate))
    out = []
    for i, gap in enumerate(gaps):
        out.append((rng.standard_normal(gap) * floor).astype(np.float32))
        if i < len(pieces):
            p = pieces[i].copy()
            k = min(fade, len(p) // 2)
            if k:
                ramp = np.linspace(0.0, 1.0, k, dtype=np.float32)
                p[:k] *= ramp
                p[-k:] *= ramp[::-1]
            out.append(p)
    return np.concatenate(out)


def _check_speakers(manifest: Path, known: list[str], test_speakers: list[str],
                    dev_speakers: list[str] | None) -> None:
    """One-line errors for unknown / overlapping speakers or no speakers left to train on."""
    listing = f"known speakers: {', '.join(known)}"
    for role, names in (("test", test_speakers), ("dev", dev_speakers)):
        if names is None:
            continue
        unknown = [s for s in names if s not in known]
        if not names or unknown:
            what = f"unknown {role} speaker(s) {', '.join(unknown)}" if unknown else f"no {role} speakers given"
            raise DataError(f"{manifest}: {what}; {listing}")
    if dev_speakers is not None:
        both = [s for s in dev_speakers if s in test_speakers]
        if both:
            raise DataError(f"{manifest}: speaker(s) {', '.join(both)} both in the test and the dev "
                            "speakers; the splits must be speaker-disjoint")
    held = set(test_speakers) | set(dev_speakers or ())
    if not [s for s in known if s not in held]:
        what = "a test or dev speaker" if dev_speakers is not None else "a test speaker"
        rest = "train" if dev_speakers is not None else "train/dev"
        raise DataError(f"{manifest}: every speaker is {what}; none left for {rest} ({listing})")


@builds_folder(CORPUS_ENTRIES, DataError)
def build_digit_corpus(src: str | Path, out_dir: str | Path, test_speakers: Iterable[str] = ("yweweler",),
                       dev_speakers: Iterable[str] | None = None, dev_fraction: float = 0.1,
                       n_train: int = 3000, n_dev: int = 300, n_test: int = 500, min_digits: int = 1,
                       max_digits: int = 7, gap_ms: tuple[float, float] = (50, 250), seed: int = 0,
                       progress: bool = True) -> dict[str, Path]:
    """Build connected-digit train/dev/test manifests in ``out_dir`` from FSDD at ``src``.

    ``src`` is the FSDD folder (with ``manifest.jsonl``) or the manifest itself. ``dev_speakers``
    (optional) makes dev speaker-disjoint from train and test (see the module docstring). Returns
    ``{"train"|"dev"|"test": manifest path}``; audio goes to ``out_dir/audio``, parameters and the
    speakers of each split to ``out_dir/corpus.json``.
    """
    started = time.perf_counter()
    src = Path(src)
    test_speakers = [test_speakers] if isinstance(test_speakers, str) else list(test_speakers)
    if dev_speakers is not None:
        dev_speakers = [dev_speakers] if isinstance(dev_speakers, str) else list(dev_speakers)
    if not 1 <= min_digits <= max_digits:
        raise DataError(f"need 1 <= min_digits <= max_digits, got {min_digits}..{max_digits}")
    if len(gap_ms) != 2 or not 0 <= gap_ms[0] <= gap_ms[1]:
        raise DataError(f"gap_ms must be (low, high) with 0 <= low <= high, got {gap_ms!r}")
    if not 0.0 < dev_fraction < 1.0:
        raise DataError(f"dev_fraction must be in (0, 1), got {dev_fraction}")
    for name, n in (("n_train", n_train), ("n_dev", n_dev), ("n_test", n_test)):
        if n < 1:
            raise DataError(f"{name} must be >= 1, got {n}")
    manifest = _source_manifest(src)
    rows = read_manifest(manifest)

    known = sorted({r.speaker for r in rows})
    _check_speakers(manifest, known, test_speakers, dev_speakers)

    # pools[split][speaker][digit] -> list of source rows
    rng = np.random.default_rng(seed)
    by_spk_digit: dict[tuple[str, str], list[Utterance]] = {}
    for r in rows:
        word = _digit_word(r.text, f"{manifest} (id {r.id})")
        by_spk_digit.setdefault((r.speaker, word), []).append(r)
    pools: dict[str, dict[str, dict[str, list[Utterance]]]] = {"train": {}, "dev": {}, "test": {}}
    for (spk, word), recs in sorted(by_spk_digit.items()):
        recs = sorted(recs, key=lambda u: u.id)
        if spk in test_speakers:
            pools["test"].setdefault(spk, {})[word] = recs
            continue
        if dev_speakers is not None:  # speaker-disjoint dev: whole speakers, no recording held out
            pools["dev" if spk in dev_speakers else "train"].setdefault(spk, {})[word] = recs
            continue
        order = rng.permutation(len(recs))
        n_held = int(round(dev_fraction * len(recs))) if len(recs) > 1 else 0
        if n_held == 0 and len(recs) > 1:
            n_held = 1
        held = [recs[i] for i in order[:n_held]]
        kept = [recs[i] for i in order[n_held:]]
        if kept:
            pools["train"].setdefault(spk, {})[word] = kept
        if held:
            pools["dev"].setdefault(spk, {})[word] = held
    for split in ("train", "dev"):
        if not pools[split]:
            raise DataError(f"{manifest}: too few recordings of the train speakers for a {split} split")

    out_dir = Path(out_dir)
    audio_dir = out_dir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale(out_dir, ("train.jsonl", "dev.jsonl", "test.jsonl", "corpus.json"))

    plan: list[tuple[str, str, str, list[Utterance], list[int], int]] = []
    sizes = {"train": n_train, "dev": n_dev, "test": n_test}
    recordings = _Recordings()
    for split in ("train", "dev", "test"):
        speakers = sorted(pools[split])
        for i in range(sizes[split]):
            spk = speakers[int(rng.integers(len(speakers)))]
            digits = sorted(pools[split][spk])
            k = int(rng.integers(min_digits, max_digits + 1))
            picks = []
            for _ in range(k):
                recs = pools[split][spk][digits[int(rng.integers(len(digits)))]]
                picks.append(recs[int(rng.integers(len(recs)))])
            gaps = [float(g) for g in rng.uniform(gap_ms[0], gap_ms[1], size=k + 1)]
            plan.append((split, f"digits-{split}-{i:05d}", spk, picks, gaps, int(rng.integers(2**31))))

    out_rows: dict[str, list[Utterance]] = {"train": [], "dev": [], "test": []}
    for split, uid, spk, picks, gaps_ms, useed in _progress(plan, len(plan), "splicing digits", progress):
        pieces = [recordings.get(p.audio_filepath) for p in picks]
        sr = recordings.sample_rate
        floor = min(_noise_floor(p, sr) for p in pieces)
        x = _splice(pieces, [int(round(g * sr / 1000)) for g in gaps_ms], floor,
                    np.random.default_rng(useed), sr)
        path = audio_dir / f"{uid}.flac"
        write_flac(path, x, sr)
        text = " ".join(_digit_word(p.text, p.audio_filepath) for p in picks)
        out_rows[split].append(Utterance(str(path), len(x) / sr, text, spk, uid))

    info = {
        "kind": "fsdd_digits",
        "source": str(manifest.resolve()),
        "params": {"test_speakers": test_speakers, "dev_speakers": dev_speakers,
                   "dev_fraction": dev_fraction if dev_speakers is None else None, "n_train": n_train,
                   "n_dev": n_dev, "n_test": n_test, "min_digits": min_digits,
                   "max_digits": max_digits, "gap_ms": list(gap_ms), "seed": seed},
        "sample_rate": recordings.sample_rate,
        "splits": {
            split: {
                "utterances": len(out_rows[split]),
                "hours": round(sum(r.duration for r in out_rows[split]) / 3600, 4),
                "speakers": sorted(pools[split]),
                "source_recordings": sum(len(v) for d in pools[split].values() for v in d.values()),
            }
            for split in ("train", "dev", "test")
        },
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    return _write_manifests(out_dir, out_rows, info)


if __name__ == "__main__":
    import argparse
    import json
    import sys

    ap = argparse.ArgumentParser(description="Build connected-digit manifests from FSDD.")
    ap.add_argument("src")
    ap.add_argument("out_dir")
    ap.add_argument("--test-speakers", nargs="+", default=["yweweler"])
    ap.add_argument("--dev-speakers", nargs="+", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        out = build_digit_corpus(args.src, args.out_dir, test_speakers=args.test_speakers,
                                 dev_speakers=args.dev_speakers, seed=args.seed)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({k: str(v) for k, v in out.items()}))
