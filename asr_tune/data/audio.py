"""Audio I/O: decode with soundfile, mix to mono, resample with torchaudio; errors name the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from asr_tune.errors import DataError


def load_audio(path: str | Path, sample_rate: int, expected_rate: int | None = None) -> torch.Tensor:
    """Return a mono float32 waveform ``(time,)`` at ``sample_rate``.

    Raises ``DataError`` for a missing, unreadable or empty file, or (when ``expected_rate`` is
    given) a file whose native rate differs from what the manifest promised.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: audio file not found")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile.LibsndfileError and friends
        raise DataError(f"{path}: cannot decode audio ({err})") from None
    if data.shape[0] == 0:
        raise DataError(f"{path}: audio file has zero samples")
    if expected_rate is not None and sr != expected_rate:
        raise DataError(f"{path}: sample rate {sr} Hz, expected {expected_rate} Hz")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: audio contains NaN/inf samples")
    wav = torch.from_numpy(data.mean(axis=1))
    if sr != sample_rate:
        wav = AF.resample(wav, sr, sample_rate)
    return wav


def save_audio(path: str | Path, wav: torch.Tensor | np.ndarray, sample_rate: int) -> None:
    """Write 16-bit FLAC/WAV (format from the suffix)."""
    arr = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    arr = np.clip(arr, -1.0, 1.0)
    sf.write(str(path), arr, sample_rate, subtype="PCM_16")
