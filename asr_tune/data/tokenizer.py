"""Tokenizers: words (small closed vocabularies), characters, or SentencePiece, from the train texts.

Id 0 is always the CTC blank. A tokenizer serialises to a small dict (``state()``) that travels
inside every checkpoint, so a checkpoint alone is enough to decode.
"""
from __future__ import annotations

import base64
import io
from typing import Iterable, Protocol

from asr_tune.config import TokenizerConfig
from asr_tune.errors import ConfigError

BLANK = 0


class Tokenizer(Protocol):
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Iterable[int]) -> str: ...
    def state(self) -> dict: ...


class CharTokenizer:
    """Characters of the training transcripts (space included); unknown characters are dropped."""

    def __init__(self, chars: list[str]) -> None:
        self.chars = list(chars)
        self.index = {c: i + 1 for i, c in enumerate(self.chars)}
        self.vocab_size = len(self.chars) + 1

    @classmethod
    def train(cls, texts: Iterable[str]) -> "CharTokenizer":
        return cls(sorted({c for t in texts for c in t}))

    def encode(self, text: str) -> list[int]:
        return [self.index[c] for c in text if c in self.index]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join("".join(self.chars[i - 1] for i in ids if 0 < i <= len(self.chars)).split())

    def state(self) -> dict:
        return {"kind": "char", "chars": self.chars}


class WordTokenizer:
    """One CTC token per word of the training transcripts (e.g. the ten digit words).

    Words never seen in training cannot be emitted: ``encode`` drops them, so such an utterance
    scores their deletions (the warning is the data layer's job).
    """

    def __init__(self, words: list[str]) -> None:
        self.words = list(words)
        self.index = {w: i + 1 for i, w in enumerate(self.words)}
        self.vocab_size = len(self.words) + 1

    @classmethod
    def train(cls, texts: Iterable[str]) -> "WordTokenizer":
        return cls(sorted({w for t in texts for w in t.split()}))

    def encode(self, text: str) -> list[int]:
        return [self.index[w] for w in text.split() if w in self.index]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.words[i - 1] for i in ids if 0 < i <= len(self.words))

    def state(self) -> dict:
        return {"kind": "word", "words": self.words}


class SentencePieceTokenizer:
    """SentencePiece unigram/BPE; piece ``k`` maps to CTC id ``k + 1``."""

    def __init__(self, model_proto: bytes) -> None:
        import sentencepiece as spm

        self.proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.vocab_size = self.sp.get_piece_size() + 1

    @classmethod
    def train(cls, texts: Iterable[str], cfg: TokenizerConfig) -> "SentencePieceTokenizer":
        import sentencepiece as spm

        texts = list(texts)
        buf = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(texts), model_writer=buf, vocab_size=cfg.vocab_size,
                model_type=cfg.model_type, character_coverage=1.0, bos_id=-1, eos_id=-1,
                unk_id=0, hard_vocab_limit=False, minloglevel=2, num_threads=1)
        except RuntimeError as err:
            raise ConfigError(f"tokenizer.vocab_size={cfg.vocab_size}: SentencePiece training failed "
                              f"on {len(texts)} transcripts ({err})") from None
        return cls(buf.getvalue())

    def encode(self, text: str) -> list[int]:
        return [i + 1 for i in self.sp.encode(text)]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.sp.decode([i - 1 for i in ids if i > 0]).split())

    def state(self) -> dict:
        return {"kind": "sentencepiece", "model_proto": base64.b64encode(self.proto).decode()}


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig) -> Tokenizer:
    if cfg.kind == "char":
        return CharTokenizer.train(texts)
    if cfg.kind == "word":
        return WordTokenizer.train(texts)
    return SentencePieceTokenizer.train(texts, cfg)


def tokenizer_from_state(state: dict) -> Tokenizer:
    if state.get("kind") == "char":
        return CharTokenizer(state["chars"])
    if state.get("kind") == "word":
        return WordTokenizer(state["words"])
    if state.get("kind") == "sentencepiece":
        return SentencePieceTokenizer(base64.b64decode(state["model_proto"]))
    raise ConfigError(f"unknown tokenizer state kind {state.get('kind')!r}")
