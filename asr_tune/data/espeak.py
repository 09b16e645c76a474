"""eSpeak NG through ``ctypes``: the library and voice data of the ``espeakng-loader`` wheel.

Everything is offline: ``espeakng-loader`` ships ``libespeak-ng`` and its voice data inside the
wheel; :class:`Espeak` drives the library in synchronous mode, with the samples collected by a
synth callback. Nothing is downloaded at run time.

Deterministic for a given seed: libespeak-ng keeps synthesis state in static variables that
``espeak_Terminate`` does not reset, so each utterance is rendered by a freshly loaded private copy
of the library, with its random seed set. Used by :mod:`asr_tune.data.synth`.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from asr_tune.errors import DataError

# eSpeak API constants (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH, _RANGE, _WORDGAP = 1, 3, 4, 7

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)


def espeak_paths() -> tuple[Path, Path]:
    """(library, espeak-ng-data) from the espeakng-loader wheel; DataError if unusable."""
    try:
        import espeakng_loader
    except ImportError as err:
        raise DataError(f"eSpeak NG is not available: cannot import espeakng_loader ({err}); "
                        "install it with `pip install espeakng-loader`") from None
    lib = Path(espeakng_loader.get_library_path())
    try:
        data = Path(espeakng_loader.get_data_path())
    except Exception as err:  # RuntimeError when the data folder is missing
        raise DataError(f"eSpeak NG voice data missing ({err})") from None
    if not lib.is_file():
        raise DataError(f"{lib}: eSpeak NG library not found (reinstall espeakng-loader)")
    return lib, data


class Espeak:
    """Renders utterances with a private copy of libespeak-ng, freshly loaded for each one.

    A private copy (a file of our own in a temp dir) keeps other users of libespeak-ng in the same
    process from sharing -- and perturbing -- its static state; loading it anew per utterance makes
    the output independent of what was synthesised before (``dlclose`` unloads it completely).
    """

    def __init__(self) -> None:
        src, self.data_path = espeak_paths()
        self._tmp = tempfile.mkdtemp(prefix="asr_tune_espeak_")
        self.lib_path = Path(self._tmp) / src.name
        try:
            shutil.copyfile(src, self.lib_path)
        except OSError as err:
            self.close()
            raise DataError(f"{src}: cannot copy the eSpeak NG library to {self._tmp} ({err})") from None
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)
        try:
            self._libc = ctypes.CDLL(None)
        except (OSError, TypeError):  # TypeError on Windows
            self._libc = None
        self.sample_rate = 0
        self.version = ""
        self.variants = self._listing("voices/!v")
        self.languages = {p.name.lower() for p in (self.data_path / "lang").rglob("*") if p.is_file()}
        try:  # a smoke test, so that a broken install fails here with a clear message
            self.synth("one", "en", 175, 50, 50, 0, seed=0)
        except BaseException:
            self.close()
            raise

    def _listing(self, sub: str) -> set[str]:
        folder = self.data_path / sub
        return {p.name for p in folder.iterdir()} if folder.is_dir() else set()

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _collect(self, wav, numsamples, events) -> int:
        if numsamples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0

    @contextmanager
    def _loaded(self) -> Iterator[ctypes.CDLL]:
        try:
            lib = ctypes.CDLL(str(self.lib_path), mode=getattr(os, "RTLD_LOCAL", 0))
        except OSError as err:
            raise DataError(f"{self.lib_path}: cannot load eSpeak NG library ({err})") from None
        try:
            lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
            lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                         ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
            lib.espeak_Info.restype = ctypes.c_char_p
            lib.espeak_Info.argtypes = [ctypes.c_void_p]
            sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(),
                                       _INITIALIZE_DONT_EXIT)
            if sr <= 0:
                raise DataError(f"{self.data_path}: eSpeak NG failed to initialise (code {sr})")
            self.sample_rate = sr
            if not self.version:
                self.version = (lib.espeak_Info(None) or b"").decode(errors="replace")
            lib.espeak_SetSynthCallback(self._callback)
            try:
                yield lib
            finally:
                lib.espeak_Terminate()
        finally:
            import _ctypes

            unload = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary", None)
            if unload is not None:
                unload(lib._handle)

    def synth(self, text: str, voice: str, rate: int, pitch: int, prange: int, wordgap: int,
              seed: int) -> np.ndarray:
        """Float32 samples at ``self.sample_rate`` for ``text`` spoken by ``voice`` ("en-us+m3")."""
        self._chunks = []
        with self._loaded() as lib:
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise DataError(f"eSpeak NG has no voice {voice!r} (data: {self.data_path})")
            for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, prange), (_WORDGAP, wordgap)):
                lib.espeak_SetParameter(param, int(value), 0)
            seed = int(seed) & 0x7FFFFFFF
            if hasattr(lib, "espeak_ng_SetRandSeed"):
                lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
                lib.espeak_ng_SetRandSeed(seed)
            if self._libc is not None:
                self._libc.srand(seed)  # some variants (breath + klatt) draw from libc's rand()
            data = text.encode("utf-8")
            err = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if err != 0:
                raise DataError(f"eSpeak NG failed to synthesise {text!r} with {voice} (code {err})")
        if not self._chunks:
            raise DataError(f"eSpeak NG produced no audio for {text!r} with voice {voice}")
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0
