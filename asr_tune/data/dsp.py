"""Signal helpers of the corpus builders: silence trimming, resampling, coloured noise, FLAC output.

:func:`trim_silence` and :func:`write_flac` are used by :mod:`asr_tune.data.synth` (which
re-exports them) and :mod:`asr_tune.data.digits`.
"""
from __future__ import annotations

import io
import math
import os
import threading
from pathlib import Path

import numpy as np
import soundfile as sf


def trim_silence(x: np.ndarray, sample_rate: int, threshold_db: float = -40.0,
                 margin_s: tuple[float, float] | float = 0.1) -> np.ndarray:
    """Cut leading/trailing audio quieter than ``threshold_db`` (re the loudest 10 ms frame),
    keeping ``margin_s`` seconds (lead, tail) of it -- padded with zeros where there is less."""
    lead, tail = (margin_s, margin_s) if isinstance(margin_s, (int, float)) else margin_s
    hop = max(1, int(sample_rate * 0.01))
    n_frames = max(1, len(x) // hop)
    frames = x[: n_frames * hop].reshape(n_frames, hop) if len(x) >= hop else x.reshape(1, -1)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-20)
    active = np.nonzero(rms >= rms.max() * 10 ** (threshold_db / 20))[0]
    if len(active) == 0 or rms.max() < 1e-6:
        return x
    start = active[0] * hop - int(lead * sample_rate)
    end = (active[-1] + 1) * hop + int(tail * sample_rate)
    out = x[max(start, 0): min(end, len(x))]
    pad = (max(-start, 0), max(end - len(x), 0))
    return np.pad(out, pad) if any(pad) else out


def resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    """``x`` resampled from ``src`` to ``dst`` Hz (polyphase; ``x`` itself when they are equal)."""
    if src == dst:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(src, dst)
    return resample_poly(x, dst // g, src // g).astype(np.float32)


def colored_noise(rng: np.random.Generator, n: int, color: str) -> np.ndarray:
    """``n`` samples of white, pink (1/f power) or brown (1/f^2) noise, not normalised."""
    white = rng.standard_normal(n)
    if color == "white":
        return white
    spec = np.fft.rfft(white)
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    spec /= np.sqrt(f) if color == "pink" else f  # 1/f power (pink) or 1/f^2 (brown)
    return np.fft.irfft(spec, n)


def write_flac(path: str | Path, x: np.ndarray, sample_rate: int) -> None:
    """16-bit FLAC written to a temp name and renamed, so no half-written file has the final name."""
    path = Path(path)
    buf = io.BytesIO()  # encoding in memory: libsndfile's many small writes are slow on some disks
    sf.write(buf, np.clip(x, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        with open(tmp, "wb") as fh:
            fh.write(buf.getbuffer())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
