"""On-disk cache of log mel power, one file per (corpus rows, feature settings, speed factor).

The key is a SHA-256 over the feature settings, the speed factor, a format version and, for each
utterance, its id and the SHA-1 of its audio bytes: any change of audio, rows or settings gives a
new file; nothing is ever reused across settings. A cache entry is two files in the cache folder:

    <key>.npy    float16 log mel power of all utterances, concatenated over frames: (sum T, n_mels)
    <key>.json   key material, per-utterance frame offsets/lengths, total frames, the .npy byte size

Both are written to temporary names and renamed into place under an exclusive lock, the .json
last; a reader accepts an entry only if the .json names its key and the .npy has the promised size
and shape, else it rebuilds it. Every trial and every node that reads the path shares the entries.

Usage::

    from asr_tune.data.cache import FeatureStore
    store = FeatureStore.open(rows, cfg.features, cfg.data.sample_rate, speed=1.0,
                              folder=cache_folder(cfg.features, cfg.data.train))  # builds if needed
    logp = store.get(i)          # (frames, n_mels) float32 tensor of row i
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torchaudio.functional as AF

from asr_tune.config import FeatureConfig
from asr_tune.data.audio import load_audio
from asr_tune.data.features import LogMel
from asr_tune.data.manifest import Utterance

log = logging.getLogger(__name__)

CACHE_VERSION = 1
CACHE_DIRNAME = ".feature_cache"
_AUDIO_DIGESTS: dict[tuple[str, int, int], str] = {}


def audio_digest(path: str) -> str:
    st = os.stat(path)
    memo = (path, st.st_size, st.st_mtime_ns)
    if memo not in _AUDIO_DIGESTS:
        _AUDIO_DIGESTS[memo] = hashlib.sha1(Path(path).read_bytes()).hexdigest()
    return _AUDIO_DIGESTS[memo]


def speed_waveform(wav: torch.Tensor, sample_rate: int, speed: float) -> torch.Tensor:
    """Tempo and pitch both scaled by ``speed`` (the Kaldi/ESPnet speed perturbation)."""
    if speed == 1.0:
        return wav
    return AF.resample(wav, int(round(sample_rate * speed)), sample_rate)


def feature_settings(cfg: FeatureConfig, sample_rate: int) -> dict:
    return {"sample_rate": sample_rate, "n_mels": cfg.n_mels, "win_ms": cfg.win_ms, "hop_ms": cfg.hop_ms}


def cache_key(rows: list[Utterance], cfg: FeatureConfig, sample_rate: int, speed: float) -> str:
    h = hashlib.sha256(json.dumps({"version": CACHE_VERSION, "speed": speed,
                                   **feature_settings(cfg, sample_rate)}, sort_keys=True).encode())
    for u in rows:
        h.update(f"{u.id}\0{audio_digest(u.audio_filepath)}\n".encode())
    return h.hexdigest()[:32]


def _writable(folder: Path) -> bool:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return os.access(probe, os.W_OK)


def cache_folder(cfg: FeatureConfig, source: str | Path) -> Path:
    """``features.cache_dir``, else ``.feature_cache`` beside the manifest (or LibriSpeech split dir),
    else, when that is read-only (shared data), the user's cache folder."""
    if cfg.cache_dir:
        return Path(cfg.cache_dir)
    src = Path(source).resolve()
    folder = (src if src.is_dir() else src.parent) / CACHE_DIRNAME
    if _writable(folder):
        return folder
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return home / "asr-tune" / "features"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class FeatureStore:
    """Read-only view of one cache entry (memory-mapped, opened lazily in each loader worker)."""

    def __init__(self, npy: Path, offsets: list[int], lengths: list[int]) -> None:
        self.npy, self.offsets, self.lengths = npy, offsets, lengths
        self._arr: np.ndarray | None = None

    def __getstate__(self) -> dict:  # loader workers re-open the memory map
        return {**self.__dict__, "_arr": None}

    def get(self, i: int) -> torch.Tensor:
        if self._arr is None:
            self._arr = np.load(self.npy, mmap_mode="r")
        o = self.offsets[i]
        return torch.from_numpy(np.asarray(self._arr[o: o + self.lengths[i]], dtype=np.float32))

    # ---- building / validating ---------------------------------------------------------------
    @staticmethod
    def _valid(meta_path: Path, npy: Path, key: str) -> dict | None:
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("key") != key or npy.stat().st_size != meta["npy_bytes"]:
                return None
            arr = np.load(npy, mmap_mode="r")
            if arr.shape != (meta["frames"], meta["n_mels"]) or arr.dtype != np.float16:
                return None
            return meta
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @classmethod
    def open(cls, rows: list[Utterance], cfg: FeatureConfig, sample_rate: int, speed: float = 1.0,
             folder: Path | None = None) -> "FeatureStore":
        key = cache_key(rows, cfg, sample_rate, speed)
        folder = folder or cache_folder(cfg, rows[0].audio_filepath)
        npy, meta_path = folder / f"{key}.npy", folder / f"{key}.json"
        meta = cls._valid(meta_path, npy, key)
        if meta is None:
            with _locked(folder / f"{key}.lock"):
                meta = cls._valid(meta_path, npy, key)  # another process may have built it meanwhile
                if meta is None:
                    if meta_path.exists() or npy.exists():
                        log.warning("feature cache %s is stale or truncated: rebuilding", npy)
                    meta = cls._build(rows, cfg, sample_rate, speed, key, npy, meta_path)
        return cls(npy, meta["offsets"], meta["lengths"])

    @staticmethod
    def _build(rows: list[Utterance], cfg: FeatureConfig, sample_rate: int, speed: float, key: str,
               npy: Path, meta_path: Path) -> dict:
        mel = LogMel(cfg, sample_rate)
        chunks, offsets, lengths, total = [], [], [], 0
        with torch.inference_mode():
            for u in rows:
                wav = speed_waveform(load_audio(u.audio_filepath, sample_rate), sample_rate, speed)
                logp, flen = mel.log_power(wav[None], torch.tensor([wav.numel()]))
                arr = logp[0, : int(flen[0])].numpy().astype(np.float16)
                chunks.append(arr)
                offsets.append(total)
                lengths.append(arr.shape[0])
                total += arr.shape[0]
        full = np.concatenate(chunks) if chunks else np.zeros((0, cfg.n_mels), np.float16)
        tmp_npy = npy.with_name(f".{npy.name}.{os.getpid()}.tmp")
        with open(tmp_npy, "wb") as fh:
            np.save(fh, full)
        meta = {"key": key, "version": CACHE_VERSION, "speed": speed, **feature_settings(cfg, sample_rate),
                "frames": int(full.shape[0]), "utterances": len(rows), "npy_bytes": tmp_npy.stat().st_size,
                "offsets": offsets, "lengths": lengths}
        os.replace(tmp_npy, npy)
        tmp_meta = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.tmp")
        tmp_meta.write_text(json.dumps(meta))
        os.replace(tmp_meta, meta_path)
        log.info("feature cache: %d utterances, speed %.2f -> %s", len(rows), speed, npy)
        return meta
