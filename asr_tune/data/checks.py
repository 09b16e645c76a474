"""Check every utterance's audio before the first training step, not after an epoch.

``check_audio`` reads the header (exists, decodable, samples > 0, sample rate, and the manifest's
``duration`` against the header's — a 600-s file declared as 1 s would slip past ``max_duration``
and allocate gigabytes) and, with ``decode=True``, decodes the whole file (a truncated FLAC fails
only part-way through; NaN/inf samples poison the loss). Errors name the manifest line and the file.
``check_all`` runs it over a split on a few threads (libsndfile releases the GIL);
files that passed are remembered per process (path, mtime, size), so a reused trial actor does not
decode them again.

Usage::

    from asr_tune.data.checks import check_all
    good, bad = check_all(rows, source_rate=0, decode=True)   # bad: one message per bad utterance
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from asr_tune.data.manifest import Utterance
from asr_tune.errors import DataError

DURATION_TOLERANCE_S = 0.25  # + 10 % of the header's duration
BLOCK_FRAMES = 1 << 18
_PASSED: set[tuple] = set()  # (path, mtime, size, duration, rate, decode) that passed


def _where(utt: Utterance) -> str:
    return f"{utt.where}: " if utt.where else ""


def check_audio(utt: Utterance, source_rate: int = 0, decode: bool = True) -> None:
    """Raise ``DataError`` naming the manifest line and audio file when ``utt`` cannot be trained on."""
    path = Path(utt.audio_filepath)
    at = _where(utt)
    if not path.is_file():
        raise DataError(f"{at}{path}: audio file not found (utterance {utt.id})")
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile.LibsndfileError and friends
        raise DataError(f"{at}{path}: cannot decode audio ({str(err).splitlines()[0]})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise DataError(f"{at}{path}: audio file has zero samples (utterance {utt.id})")
    if source_rate and info.samplerate != source_rate:
        raise DataError(f"{at}{path}: sample rate {info.samplerate} Hz, expected data.source_sample_rate="
                        f"{source_rate}")
    header = info.frames / info.samplerate
    if abs(header - utt.duration) > DURATION_TOLERANCE_S + 0.1 * header:
        raise DataError(f"{at}'duration' {utt.duration:g} s disagrees with the audio header of {path} "
                        f"({header:.2f} s)")
    if decode:
        _decode_all(path, at, info.frames)


def _decode_all(path: Path, at: str, frames: int) -> None:
    read = 0
    try:
        with sf.SoundFile(str(path)) as fh:
            for block in fh.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
                if not np.isfinite(block).all():
                    raise DataError(f"{at}{path}: audio contains NaN/inf samples")
                read += block.shape[0]
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"{at}{path}: cannot decode audio ({str(err).splitlines()[0]})") from None
    if read < frames:
        raise DataError(f"{at}{path}: truncated audio ({read} of {frames} samples decodable)")


def check_all(rows: list[Utterance], source_rate: int = 0, decode: bool = True
              ) -> tuple[list[Utterance], list[str]]:
    """``(good rows in order, messages for the bad ones)``."""
    def one(utt: Utterance) -> str | None:
        try:
            st = os.stat(utt.audio_filepath)
            key = (utt.audio_filepath, st.st_mtime_ns, st.st_size, utt.duration, source_rate, decode)
        except OSError:
            key = None
        if key in _PASSED:  # a reused trial actor: this exact file already passed
            return None
        try:
            check_audio(utt, source_rate, decode)
        except DataError as err:
            return str(err)
        if key is not None:
            _PASSED.add(key)
        return None

    workers = min(8, os.cpu_count() or 1, max(len(rows) // 64, 1))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(one, rows, chunksize=32))
    else:
        results = [one(u) for u in rows]
    return [u for u, r in zip(rows, results) if r is None], [r for r in results if r is not None]
