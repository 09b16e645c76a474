"""Greedy CTC decoding and WER (jiwer)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import jiwer
import torch

from asr_tune.data.text import normalize_text
from asr_tune.data.tokenizer import BLANK, Tokenizer


def greedy_ctc(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """``(batch, frames, vocab)`` -> token ids per utterance: argmax, merge repeats, drop blanks."""
    best = log_probs.argmax(-1).cpu()
    out = []
    for seq, n in zip(best, lengths.cpu().tolist()):
        seq = seq[:n]
        keep = torch.ones_like(seq, dtype=torch.bool)
        keep[1:] = seq[1:] != seq[:-1]
        out.append([int(t) for t in seq[keep] if t != BLANK])
    return out


def decode_batch(log_probs: torch.Tensor, lengths: torch.Tensor, tok: Tokenizer) -> list[str]:
    return [tok.decode(ids) for ids in greedy_ctc(log_probs, lengths)]


@dataclass
class WERStats:
    wer: float  # in percent
    substitutions: int
    deletions: int
    insertions: int
    n_words: int
    n_utts: int

    def to_dict(self) -> dict:
        return asdict(self)


def top_substitutions(refs: list[str], hyps: list[str], k: int = 20) -> list[dict[str, Any]]:
    """The ``k`` most frequent word substitutions (reference -> hypothesis) over the corpus."""
    if not refs:
        return []
    out = jiwer.process_words([normalize_text(r) for r in refs], [normalize_text(h) for h in hyps])
    subs = jiwer.collect_error_counts(out)[0]
    return [{"ref": r, "hyp": h, "count": n}
            for (r, h), n in sorted(subs.items(), key=lambda kv: -kv[1])[:k]]


def wer_stats(refs: list[str], hyps: list[str]) -> WERStats:
    """Corpus WER in percent on normalised text (``data.text``); empty hypotheses count as all-deletions."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        return WERStats(0.0, 0, 0, 0, 0, 0)
    refs, hyps = [normalize_text(r) for r in refs], [normalize_text(h) for h in hyps]  # as in training
    out = jiwer.process_words(refs, hyps)
    n_words = out.hits + out.substitutions + out.deletions
    errors = out.substitutions + out.deletions + out.insertions
    return WERStats(100.0 * errors / max(n_words, 1), out.substitutions, out.deletions,
                    out.insertions, n_words, len(refs))
