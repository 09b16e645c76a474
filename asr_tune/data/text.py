"""Transcript normalisation, the same for training and scoring, and a warning for text the model
cannot emit.

``normalize_text`` is applied by the manifest and LibriSpeech readers (so tokenizers are trained on
it) and by ``wer_stats`` to references and hypotheses (so "ZERO." scores like "zero"): Unicode
NFKC, lower case, letters/digits/apostrophes kept, everything else a word boundary.
``warn_unemittable`` says once per corpus when references hold characters (or, for a word
tokenizer, words) that the tokenizer cannot produce: they can only count as errors.

Usage::

    from asr_tune.data.text import normalize_text, warn_unemittable
    normalize_text("Zero, ONE!")            # -> "zero one"
    warn_unemittable(texts, tokenizer, "data/test.jsonl")
"""
from __future__ import annotations

import logging
import unicodedata
from collections import Counter
from typing import Any, Iterable

log = logging.getLogger(__name__)
_WARNED: set[str] = set()


def normalize_text(text: str) -> str:
    """NFKC, lower-case, keep letters/digits/apostrophes, collapse everything else to single spaces."""
    out = []
    for ch in unicodedata.normalize("NFKC", text).lower():
        out.append(ch if ch.isalnum() or ch == "'" else " ")
    return " ".join("".join(out).split())


def unemittable(texts: Iterable[str], tok: Any) -> tuple[int, int, Counter]:
    """``(transcripts the tokenizer cannot round-trip, transcripts, missing chars/words -> count)``."""
    bad, n, missing = 0, 0, Counter()
    for text in texts:
        n += 1
        back = tok.decode(tok.encode(text))
        if back == text:
            continue
        bad += 1
        chars = set(text) - set(back) - {" "}
        missing.update(chars or set(text.split()) - set(back.split()))
    return bad, n, missing


def warn_unemittable(texts: Iterable[str], tok: Any, where: str) -> bool:
    """Log one warning per ``where`` when some references cannot be produced; True if it warned."""
    bad, n, missing = unemittable(texts, tok)
    if not bad or where in _WARNED:
        return False
    _WARNED.add(where)
    shown = ", ".join(repr(c) for c, _ in missing.most_common(8))
    log.warning("%s: %d of %d transcripts contain text the model cannot emit (%s); it counts as errors",
                where, bad, n, shown)
    return True
