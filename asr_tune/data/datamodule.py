"""Dataset, length-bucketed batching and the ``LightningDataModule``.

Audio is validated once (header read with soundfile) before training starts; bad utterances raise a
``DataError`` naming the file, or are skipped and counted when ``data.skip_bad_utterances`` is set.
Batches: ``wav (B, samples)``, ``wav_lens (B,)``, ``targets (B, L)``, ``target_lens (B,)``, ``texts``.
"""
from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import lightning as L
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch.utils.data import DataLoader, Dataset, Sampler

from asr_tune.config import DataConfig, FeatureConfig
from asr_tune.data.audio import load_audio
from asr_tune.data.manifest import Utterance, load_corpus
from asr_tune.errors import DataError

if TYPE_CHECKING:
    from asr_tune.data.tokenizer import Tokenizer

log = logging.getLogger(__name__)


def check_utterance(utt: Utterance, source_rate: int = 0) -> None:
    path = Path(utt.audio_filepath)
    if not path.is_file():
        raise DataError(f"{path}: audio file not found (utterance {utt.id})")
    try:
        info = sf.info(str(path))
    except Exception as err:
        raise DataError(f"{path}: cannot decode audio ({err})") from None
    if info.frames <= 0:
        raise DataError(f"{path}: audio file has zero samples (utterance {utt.id})")
    if source_rate and info.samplerate != source_rate:
        raise DataError(f"{path}: sample rate {info.samplerate} Hz, expected data.source_sample_rate="
                        f"{source_rate}")


def validated_rows(source: str, cfg: DataConfig, split: str) -> list[Utterance]:
    """Load a manifest/LibriSpeech folder and check every file's header before training starts."""
    rows = load_corpus(source)
    good, bad = [], []
    for utt in rows:
        try:
            check_utterance(utt, cfg.source_sample_rate)
        except DataError as err:
            if not cfg.skip_bad_utterances:
                raise
            bad.append(str(err))
            continue
        if utt.duration <= cfg.max_duration:
            good.append(utt)
    if bad:
        log.warning("%s: skipped %d bad utterance(s) (skip_bad_utterances); first: %s", split, len(bad), bad[0])
    if not good:
        raise DataError(f"{source}: no usable utterances in the {split} split")
    return good


class SpeechDataset(Dataset):
    def __init__(self, rows: list[Utterance], tokenizer: "Tokenizer", sample_rate: int,
                 features: FeatureConfig | None = None, train: bool = False, seed: int = 0) -> None:
        self.rows, self.tok, self.sr = rows, tokenizer, sample_rate
        self.feat = features
        self.train = train
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.rows)

    def _augment(self, wav: torch.Tensor) -> torch.Tensor:
        assert self.feat is not None
        if self.feat.speed_perturb:
            factor = self.rng.choice(self.feat.speed_perturb)
            if factor != 1.0:
                wav = AF.resample(wav, int(self.sr * factor), self.sr)
        if self.feat.noise_snr_db > 0 and self.rng.random() < 0.5:
            power = wav.pow(2).mean().clamp_min(1e-8)
            wav = wav + torch.randn_like(wav) * (power / 10 ** (self.feat.noise_snr_db / 10)).sqrt()
        return wav

    def __getitem__(self, i: int) -> dict:
        utt = self.rows[i]
        wav = load_audio(utt.audio_filepath, self.sr)
        if self.train and self.feat is not None:
            wav = self._augment(wav)
        return {"wav": wav, "tokens": torch.tensor(self.tok.encode(utt.text), dtype=torch.long),
                "text": utt.text, "id": utt.id}


def collate(items: list[dict]) -> dict:
    wav_lens = torch.tensor([len(x["wav"]) for x in items])
    tgt_lens = torch.tensor([len(x["tokens"]) for x in items])
    wav = torch.zeros(len(items), int(wav_lens.max()))
    tgt = torch.zeros(len(items), max(int(tgt_lens.max()), 1), dtype=torch.long)
    for i, x in enumerate(items):
        wav[i, : len(x["wav"])] = x["wav"]
        tgt[i, : len(x["tokens"])] = x["tokens"]
    return {"wav": wav, "wav_lens": wav_lens, "targets": tgt, "target_lens": tgt_lens,
            "texts": [x["text"] for x in items], "ids": [x["id"] for x in items]}


@dataclass
class BatchPlan:
    batch_seconds: float
    batch_size: int
    bucketing: bool
    shuffle: bool
    seed: int


class DurationBatchSampler(Sampler[list[int]]):
    """Batches of similar duration (bucketing) or random order, capped by seconds or count.

    Under DDP each rank takes every ``world``-th batch, padded so all ranks run the same number of
    steps; the epoch (set by Lightning through ``set_epoch``) reseeds the shuffle.
    """

    def __init__(self, durations: list[float], plan: BatchPlan) -> None:
        self.durations, self.plan, self.epoch = durations, plan, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.plan.seed + self.epoch)
        order = list(range(len(self.durations)))
        if self.plan.bucketing:
            order.sort(key=lambda i: self.durations[i])
        elif self.plan.shuffle:
            rng.shuffle(order)
        batches, cur, longest = [], [], 0.0
        for i in order:
            longest_new = max(longest, self.durations[i])
            full = (len(cur) >= self.plan.batch_size) if self.plan.batch_size else \
                (cur and longest_new * (len(cur) + 1) > self.plan.batch_seconds)
            if full:
                batches.append(cur)
                cur, longest_new = [], self.durations[i]
            cur.append(i)
            longest = longest_new
        if cur:
            batches.append(cur)
        if self.plan.shuffle:
            rng.shuffle(batches)
        return batches

    def _rank_world(self) -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        rank, world = self._rank_world()
        if world > 1:
            per_rank = math.ceil(len(batches) / world)
            batches = (batches * (1 + world))[: per_rank * world]
            batches = batches[rank::world]
        return iter(batches)

    def __len__(self) -> int:
        _, world = self._rank_world()
        return math.ceil(len(self._batches()) / world)


class ASRDataModule(L.LightningDataModule):
    """Train/dev/test loaders from the data config; the tokenizer is built by the caller."""

    def __init__(self, cfg: DataConfig, features: FeatureConfig, tokenizer: "Tokenizer", seed: int = 0,
                 train_rows: list[Utterance] | None = None, dev_rows: list[Utterance] | None = None,
                 test_rows: list[Utterance] | None = None) -> None:
        super().__init__()
        self.cfg, self.features, self.tok, self.seed = cfg, features, tokenizer, seed
        self.rows = {"train": train_rows, "dev": dev_rows, "test": test_rows}

    def split_rows(self, split: str) -> list[Utterance]:
        if self.rows[split] is None:
            self.rows[split] = validated_rows(getattr(self.cfg, split), self.cfg, split)
            if split == "train" and self.cfg.limit_train:
                self.rows[split] = self.rows[split][: self.cfg.limit_train]
        return self.rows[split]  # type: ignore[return-value]

    def loader(self, split: str, train: bool = False) -> DataLoader:
        rows = self.split_rows(split)
        plan = BatchPlan(self.cfg.batch_seconds, self.cfg.batch_size, self.cfg.bucketing, train, self.seed)
        ds = SpeechDataset(rows, self.tok, self.cfg.sample_rate, self.features, train, self.seed)
        return DataLoader(ds, batch_sampler=DurationBatchSampler([r.duration for r in rows], plan),
                          collate_fn=collate, num_workers=self.cfg.num_workers,
                          pin_memory=self.cfg.pin_memory, persistent_workers=self.cfg.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("dev")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")
