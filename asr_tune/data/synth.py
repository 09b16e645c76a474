"""The embedded default corpus: spoken digit strings and short commands synthesised with eSpeak NG.

Usage::

    asr-tune corpus synth --out data/synth                                    # sentences, 16 kHz
    asr-tune corpus synth --mode digits --out data/synth_digits --utterances 3000   # 8 kHz

Everything is offline: ``espeakng-loader`` ships ``libespeak-ng`` and its voice data inside the
wheel, driven through ``ctypes`` by :mod:`asr_tune.data.espeak`. Nothing is downloaded at run time.

* Vocabulary: 40 words -- the ten digits plus a small command grammar ("turn on the lights", "set the
  volume to seven", "call five two nine", ...). Transcripts are lower-case words.
* Speakers: an English voice (``en``, ``en-us``, ``en-gb-x-rp``, ...) combined with an eSpeak voice
  variant (``+m3``, ``+f4``, ``+klatt2``, ``+steph``, ...); the speaker id is ``"en-us+m3"``. The
  variants are partitioned into train / dev / test, so the test (and dev) speakers are disjoint from
  the train speakers and their timbres are never seen in training.
* Modes: ``sentences`` (the default, above) and ``digits``: connected-digit strings shaped like the
  FSDD task (:mod:`asr_tune.data.digits`): 1-7 uniformly drawn digit words "zero".."nine", 8 kHz by
  default, with wider rate / pitch / word-gap ranges, for mixing into FSDD training at a small weight.
* Per utterance: random speaking rate (120-220 wpm), pitch, pitch range and word gap; leading and
  trailing silence trimmed to a short random margin; random level; with probability ``noise_prob``
  additive white / pink / brown noise at 10-30 dB SNR.
* Deterministic for a given seed (byte-identical FLAC files): each utterance is rendered by a
  freshly loaded private copy of libespeak-ng, with its random seed set (see ``espeak``).
* Atomic: stale manifests are removed first and ``train/dev/test.jsonl`` are written only after all
  audio exists, so a failed or interrupted build leaves no complete-looking corpus.

Large builds run in worker subprocesses (``python -m asr_tune.data.synth --worker``, driven by
:mod:`asr_tune.data.workers`), which avoids ``multiprocessing``'s re-import of the caller's main
module. Signal helpers (``trim_silence``, ``write_flac``) live in :mod:`asr_tune.data.dsp`.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from asr_tune.data.dsp import colored_noise, resample, trim_silence, write_flac
from asr_tune.data.espeak import Espeak
from asr_tune.data.grammar import DIGIT_WORDS, MODES, VOCABULARY, make_text, pick
from asr_tune.data.manifest import Utterance, write_manifest
from asr_tune.data.workers import run_workers
from asr_tune.data.workers import worker_count as _n_workers  # module-level: tests patch it
from asr_tune.errors import DataError
from asr_tune.staging import builds_folder

# what a corpus build owns in its --out folder (swapped in whole on success; see asr_tune.staging)
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4000, 96000
CORPUS_ENTRIES = ("audio", "train.jsonl", "dev.jsonl", "test.jsonl", "corpus.json", ".feature_cache")

__all__ = ["DIGIT_WORDS", "LANGUAGES", "MODES", "VOCABULARY", "build_synth_corpus", "make_text",
           "trim_silence", "write_flac"]  # re-exported from grammar.py and dsp.py

# ----------------------------------------------------------------------------------------------
# Voices
# ----------------------------------------------------------------------------------------------

#: English languages of eSpeak NG (``en-shaw`` is left out: it reads the Shavian alphabet).
LANGUAGES = ("en", "en-029", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-gb-x-rp",
             "en-us", "en-us-nyc")

# Variants (espeak-ng-data/voices/!v) grouped so that every split gets some of each kind. Left out:
# whisper/whisperf/caleb (unvoiced), croak, Demonic, UniRobot, anikaRobot, robosoft*, RicishayMax*
# and announcer (heavy echo / robotic effects), fast (a test setting), "Mr serious" (space in name).
_VARIANT_GROUPS = {
    "male": ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Alex", "Andy", "AnxiousAndy", "Denis",
             "Diogo", "Gene", "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario",
             "Michael", "Mike", "Nguyen", "Storm", "Tweaky", "antonio", "boris", "ed", "grandpa",
             "gustave", "ian", "iven", "iven2", "iven3", "iven4", "john", "kaukovalta", "marcelo",
             "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro", "quincy", "rob",
             "robert", "sandro", "travis", "victor"),
    "female": ("f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "anika", "aunty", "belinda",
               "grandma", "linda", "shelby", "steph", "steph2", "steph3", "zac"),
    "klatt": ("klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "Reed", "adam", "benjamin",
              "david", "edward", "edward2", "mike2"),
}
_SPLIT_FRACTIONS = {"test": 0.15, "dev": 0.10}  # of the variants of each group; train gets the rest
_UTT_FRACTIONS = {"train": 0.8, "dev": 0.1, "test": 0.1}


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------

def _render(task: dict, engine: Espeak) -> int:
    """Synthesise one utterance to ``task["path"]`` (atomically); returns its length in samples."""
    rng = np.random.default_rng([task["seed"], task["index"], 1])
    x = engine.synth(task["text"], task["speaker"], task["rate"], task["pitch"], task["range"],
                     task["wordgap"], seed=task["seed"] * 1_000_003 + task["index"])
    sr = task["sample_rate"]
    x = resample(x, engine.sample_rate, sr)
    x = trim_silence(x, sr, -40.0, (float(rng.uniform(0.05, 0.2)), float(rng.uniform(0.05, 0.2))))
    peak = float(np.max(np.abs(x))) or 1.0
    x = x * (float(rng.uniform(0.25, 0.9)) / peak)
    if task["noise_snr_db"] is not None:
        speech = x[np.abs(x) > 0.01 * np.max(np.abs(x))]
        p_speech = float(np.mean(speech.astype(np.float64) ** 2)) if len(speech) else 1e-4
        noise = colored_noise(rng, len(x), task["noise_color"])
        noise *= math.sqrt(p_speech / 10 ** (task["noise_snr_db"] / 10) / (np.mean(noise ** 2) + 1e-20))
        x = x + noise.astype(np.float32)
        peak = float(np.max(np.abs(x)))
        if peak > 0.99:
            x = x * (0.99 / peak)
    write_flac(task["path"], x, sr)
    return len(x)


# ----------------------------------------------------------------------------------------------
# Build
# ----------------------------------------------------------------------------------------------

def _split_variants(rng: np.random.Generator, available: set[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    for group in _VARIANT_GROUPS.values():
        names = [v for v in group if v in available]
        names = [names[i] for i in rng.permutation(len(names))]
        if len(names) < 3:
            out["train"] += names
            continue
        n_test = max(1, round(_SPLIT_FRACTIONS["test"] * len(names)))
        n_dev = max(1, round(_SPLIT_FRACTIONS["dev"] * len(names)))
        out["test"] += names[:n_test]
        out["dev"] += names[n_test:n_test + n_dev]
        out["train"] += names[n_test + n_dev:]
    if not all(out.values()):
        raise DataError(f"eSpeak NG voice data has too few voice variants ({sorted(available)})")
    return {k: sorted(v, key=str.lower) for k, v in out.items()}


def _split_sizes(n: int) -> dict[str, int]:
    n_dev = max(1, round(n * _UTT_FRACTIONS["dev"]))
    n_test = max(1, round(n * _UTT_FRACTIONS["test"]))
    return {"train": n - n_dev - n_test, "dev": n_dev, "test": n_test}


def _progress(items: Iterable, total: int, desc: str, enabled: bool) -> Iterator:
    """Wrap ``items`` in a tqdm bar (a no-op wrapper when disabled)."""
    if not enabled:
        yield from items
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit="utt", dynamic_ncols=True) as bar:
        for item in items:
            yield item
            bar.update(1)


def _remove_stale(out_dir: Path, names: Iterable[str]) -> None:
    for name in names:
        (out_dir / name).unlink(missing_ok=True)


def _write_manifests(out_dir: Path, rows: dict[str, list[Utterance]], info: dict) -> dict[str, Path]:
    """corpus.json, then the three manifests; on failure, none of them is left behind."""
    written: list[Path] = []
    try:
        tmp = out_dir / ".corpus.json.partial"
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, out_dir / "corpus.json")
        written.append(out_dir / "corpus.json")
        paths = {}
        for split in ("train", "dev", "test"):
            paths[split] = write_manifest(out_dir / f"{split}.jsonl", rows[split])
            written.append(paths[split])
        return paths
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise


def _run_serial(tasks: list[dict], engine: Espeak) -> Iterator[tuple[int, int]]:
    for task in tasks:
        yield task["index"], _render(task, engine)


def _worker_main() -> int:
    """``python -m asr_tune.data.synth --worker``: tasks as JSON on stdin, one line per result."""
    tasks = json.loads(sys.stdin.read())
    try:
        engine = Espeak()
    except DataError as err:
        print(f"error {err}", flush=True)
        return 1
    try:
        for task in tasks:
            try:
                n = _render(task, engine)
            except DataError as err:
                print(f"error {err}", flush=True)
                return 1
            print(f"ok {task['index']} {n}", flush=True)
    finally:
        engine.close()
    return 0


@builds_folder(CORPUS_ENTRIES, DataError)
def build_synth_corpus(out_dir: str | Path, n_utterances: int = 1200, seed: int = 0,
                       sample_rate: int | None = None, noise_prob: float = 0.3,
                       progress: bool = True, mode: str = "sentences") -> dict[str, Path]:
    """Synthesise a corpus into ``out_dir``; returns ``{"train"|"dev"|"test": manifest}``.

    ``mode`` is a key of ``MODES``; ``sample_rate`` None means the mode's (16 kHz sentences, 8 kHz
    digits). Audio goes to ``out_dir/audio/*.flac``, the build parameters and per-split voices to
    ``out_dir/corpus.json``. Raises ``DataError`` when eSpeak NG cannot be loaded.
    """
    if mode not in MODES:
        raise DataError(f"unknown synth mode {mode!r}; choose one of {', '.join(MODES)}")
    spec = MODES[mode]
    sample_rate = spec.sample_rate if sample_rate is None else sample_rate
    if n_utterances < 3:
        raise DataError(f"n_utterances must be >= 3 (one per split), got {n_utterances}")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:  # --sample-rate 1 would write 2-sample "audio"
        raise DataError(f"--sample-rate {sample_rate}: must be {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz for speech")
    if not 0.0 <= noise_prob <= 1.0:
        raise DataError(f"noise_prob must be in [0, 1], got {noise_prob}")
    started = time.perf_counter()
    engine = Espeak()
    try:
        languages = [lang for lang in LANGUAGES if lang in engine.languages]
        if not languages:
            raise DataError(f"{engine.data_path}: eSpeak NG data has none of the English voices {LANGUAGES}")
        rng = np.random.default_rng(seed)
        variants = _split_variants(rng, engine.variants)
        sizes = _split_sizes(n_utterances)

        out_dir = Path(out_dir)
        audio_dir = out_dir / "audio"
        audio_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale(out_dir, ("train.jsonl", "dev.jsonl", "test.jsonl", "corpus.json"))

        tasks: list[dict] = []
        meta: list[tuple[str, str, str, str]] = []  # split, id, text, speaker
        for split in ("train", "dev", "test"):
            for i in range(sizes[split]):
                uid = f"{spec.id_prefix}-{split}-{i:05d}"
                speaker = f"{pick(rng, tuple(languages))}+{pick(rng, tuple(variants[split]))}"
                text = spec.text(rng)
                noisy = rng.random() < noise_prob
                tasks.append({
                    "index": len(tasks), "seed": int(seed), "text": text, "speaker": speaker,
                    "rate": int(rng.integers(spec.rate_wpm[0], spec.rate_wpm[1] + 1)),
                    "pitch": int(rng.integers(spec.pitch[0], spec.pitch[1] + 1)),
                    "range": int(rng.integers(spec.pitch_range[0], spec.pitch_range[1] + 1)),
                    "wordgap": int(rng.choice(list(spec.wordgaps))),
                    "noise_snr_db": round(float(rng.uniform(10.0, 30.0)), 2) if noisy else None,
                    "noise_color": pick(rng, ("white", "pink", "brown")),
                    "sample_rate": int(sample_rate), "path": str(audio_dir / f"{uid}.flac"),
                })
                meta.append((split, uid, text, speaker))

        n_workers = _n_workers(len(tasks))
        results = (_run_serial(tasks, engine) if n_workers == 1
                   else run_workers(tasks, n_workers, "asr_tune.data.synth"))
        lengths: dict[int, int] = {}
        try:
            for idx, n in _progress(results, len(tasks), "synthesising corpus", progress):
                lengths[idx] = n
        finally:
            results.close()  # stops worker subprocesses now, even if a traceback keeps this frame
        if len(lengths) != len(tasks):
            raise DataError(f"{out_dir}: synthesis finished with {len(tasks) - len(lengths)} "
                            "utterances missing")

        rows: dict[str, list[Utterance]] = {"train": [], "dev": [], "test": []}
        for task, (split, uid, text, speaker) in zip(tasks, meta):
            rows[split].append(Utterance(task["path"], lengths[task["index"]] / sample_rate, text,
                                         speaker, uid))
        info = {
            "kind": spec.kind,
            "params": {"mode": mode, "n_utterances": n_utterances, "seed": seed,
                       "sample_rate": sample_rate, "noise_prob": noise_prob,
                       "rate_wpm": list(spec.rate_wpm), "pitch": list(spec.pitch),
                       "pitch_range": list(spec.pitch_range), "word_gap_10ms": list(spec.wordgaps),
                       "snr_db": [10.0, 30.0]},
            "espeak": {"version": engine.version, "native_sample_rate": engine.sample_rate},
            "languages": languages,
            "vocabulary": sorted(spec.vocabulary),
            "splits": {
                split: {
                    "utterances": len(rows[split]),
                    "hours": round(sum(r.duration for r in rows[split]) / 3600, 4),
                    "variants": variants[split],
                    "speakers": sorted({r.speaker for r in rows[split]}),
                }
                for split in ("train", "dev", "test")
            },
            "build_seconds": round(time.perf_counter() - started, 2),
            "workers": n_workers,
        }
        return _write_manifests(out_dir, rows, info)
    finally:
        engine.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        sys.exit(_worker_main())
    import argparse

    ap = argparse.ArgumentParser(description="Build the synthetic eSpeak NG corpus.")
    ap.add_argument("out_dir")
    ap.add_argument("-n", "--n-utterances", type=int, default=1200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample-rate", type=int, default=None)
    ap.add_argument("--noise-prob", type=float, default=0.3)
    ap.add_argument("--mode", choices=sorted(MODES), default="sentences")
    args = ap.parse_args()
    try:
        out = build_synth_corpus(args.out_dir, args.n_utterances, args.seed, args.sample_rate,
                                 args.noise_prob, mode=args.mode)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({k: str(v) for k, v in out.items()}))
