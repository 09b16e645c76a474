"""Transcripts of the synthetic corpora: the 40-word vocabulary, its command grammar, and the modes.

A mode (``MODES``) says what :func:`asr_tune.data.synth.build_synth_corpus` draws per utterance: the
transcript generator and the eSpeak NG prosody ranges. ``sentences`` is the default corpus (digit
strings and short commands, 16 kHz); ``digits`` is shaped like the FSDD connected-digit task
(:mod:`asr_tune.data.digits`): 1-7 uniformly drawn digit words at 8 kHz.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from asr_tune.data.manifest import normalize_text

__all__ = ["DIGIT_WORDS", "MODES", "VOCABULARY", "make_digit_text", "make_text", "pick"]


DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DEVICES = ("lights", "music", "fan", "heater", "radio")
_SETTINGS = ("volume", "temperature", "timer")
_OPENABLE = ("door", "window", "garage")
_OPEN_VERBS = ("open", "close", "lock", "unlock")
_MEDIA_VERBS = ("play", "pause", "stop")

VOCABULARY: frozenset[str] = frozenset(
    DIGIT_WORDS + _DEVICES + _SETTINGS + _OPENABLE + _OPEN_VERBS + _MEDIA_VERBS
    + ("turn", "on", "off", "the", "set", "to", "up", "down", "call", "dial", "next", "song")
)


def _digits(rng: np.random.Generator, lo: int, hi: int) -> list[str]:
    n = int(rng.integers(lo, hi + 1))
    return [DIGIT_WORDS[int(d)] for d in rng.integers(0, 10, size=n)]


def pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def make_text(rng: np.random.Generator) -> str:
    """One transcript: half digit strings (1-7 digits), half command phrases."""
    if rng.random() < 0.5:
        words = _digits(rng, 1, 7)
    else:
        kind = int(rng.integers(7))
        if kind == 0:
            words = ["turn", pick(rng, ("on", "off")), "the", pick(rng, _DEVICES)]
        elif kind == 1:
            words = ["turn", "the", pick(rng, _SETTINGS[:2]), pick(rng, ("up", "down"))]
        elif kind == 2:
            words = ["set"] + (["the"] if rng.random() < 0.5 else []) + [pick(rng, _SETTINGS), "to"]
            words += _digits(rng, 1, 2)
        elif kind == 3:
            words = [pick(rng, ("call", "dial"))] + _digits(rng, 3, 7)
        elif kind == 4:
            words = [pick(rng, _OPEN_VERBS), "the", pick(rng, _OPENABLE)]
        elif kind == 5:
            words = [pick(rng, _MEDIA_VERBS), "the", pick(rng, ("music", "radio", "song"))]
            if words[0] == "play" and rng.random() < 0.4:
                words = ["play", "the", "next", "song"]
        else:
            words = [pick(rng, _SETTINGS[:2]), pick(rng, ("up", "down"))]
    return normalize_text(" ".join(words))


def make_digit_text(rng: np.random.Generator) -> str:
    """One connected-digit transcript like the FSDD strings: 1-7 digit words, each uniform."""
    return normalize_text(" ".join(_digits(rng, 1, 7)))


@dataclass(frozen=True)
class _Mode:
    """What a corpus mode draws per utterance: transcript and eSpeak NG prosody ranges."""
    kind: str
    id_prefix: str
    sample_rate: int
    text: Callable[[np.random.Generator], str]
    vocabulary: frozenset[str]
    rate_wpm: tuple[int, int]
    pitch: tuple[int, int]
    pitch_range: tuple[int, int]
    wordgaps: tuple[int, ...]  # eSpeak word gap, units of 10 ms, drawn uniformly from this tuple


MODES = {
    "sentences": _Mode("synth", "synth", 16000, make_text, VOCABULARY, (120, 220), (25, 75), (20, 90),
                       (0, 0, 0, 1, 2)),
    # FSDD strings are spliced from isolated digits with 50-250 ms gaps (~0.7 s per digit): slower
    # speech on average, more pitch spread, 0-200 ms between the words. Pitch range stays <= 90:
    # above it libespeak-ng 1.52 segfaults on some variants (en-us+rob at range 98).
    "digits": _Mode("synth_digits", "synthdigits", 8000, make_digit_text, frozenset(DIGIT_WORDS),
                    (80, 220), (10, 90), (10, 90), (0, 1, 2, 4, 6, 8, 12, 16, 20)),
}
