"""Batching by duration: fixed index sets (evaluation) and per-epoch training draws (corpus mix).

- ``DurationBatchSampler``: batches of similar duration (bucketing) or random order, capped by audio
  seconds or utterance count; yields lists of row indices. Used for dev/test and inference.
- ``EpochBatchSampler``: training. Each epoch draws every row of the main corpus plus, from each
  mixed-in corpus, ``len(main) * weight / main_weight`` rows (without replacement, cycling through
  the corpus across epochs), buckets them with a per-epoch jitter so batch composition changes, and
  yields lists of ``ItemKey`` (row, epoch, batch position, augment?) so each item's augmentation
  draws are seeded by the sampler: different in every loader worker, identical after a resume.
  With ``sortagrad`` the first epoch's batches run shortest first (SortaGrad): one- and two-word
  utterances, whose CTC alignments are easy, come before long ones, shortening the blank plateau.

Under DDP each rank takes every ``world``-th batch, padded so all ranks run the same number of steps.
Lightning only calls ``set_epoch`` on ``batch_sampler.sampler``; both samplers expose themselves there.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

import torch
from torch.utils.data import Sampler

BUCKET_JITTER = 0.15  # durations are scaled by U(1 - j, 1 + j) before bucketing, anew each epoch


@dataclass
class BatchPlan:
    batch_seconds: float
    batch_size: int
    bucketing: bool
    shuffle: bool
    seed: int
    sortagrad: bool = False  # training: the first epoch's batches in ascending duration


class ItemKey(NamedTuple):
    row: int
    epoch: int
    position: int
    augment: bool


class _EpochHook:
    """What Lightning finds at ``batch_sampler.sampler``: forwards ``set_epoch``."""

    def __init__(self, owner: "DurationBatchSampler") -> None:
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)


def pack(order: Sequence[int], durations: Sequence[float], plan: BatchPlan) -> list[list[int]]:
    """Greedy batches over ``order``: a batch is full at ``batch_size`` items or when its padded
    audio (longest x count) would exceed ``batch_seconds``."""
    batches: list[list[int]] = []
    cur: list[int] = []
    longest = 0.0
    for i in order:
        longest_new = max(longest, durations[i])
        full = (len(cur) >= plan.batch_size) if plan.batch_size else \
            bool(cur and longest_new * (len(cur) + 1) > plan.batch_seconds)
        if full:
            batches.append(cur)
            cur, longest_new = [], durations[i]
        cur.append(i)
        longest = longest_new
    if cur:
        batches.append(cur)
    return batches


def rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class Padded(int):
    """A row index inside a duplicate batch that only pads a rank (so all ranks run the same number
    of steps): evaluation must not count it."""


def shard(batches: list, rank: int, world: int, mark: bool = False) -> list:
    """This rank's every ``world``-th batch, padded with repeats; ``mark``: repeats hold ``Padded``."""
    if world <= 1:
        return batches
    per_rank = math.ceil(len(batches) / world)
    padded = (batches * (1 + world))[: per_rank * world]
    if mark:
        padded = [b if k < len(batches) else [Padded(i) for i in b] for k, b in enumerate(padded)]
    return padded[rank::world]


class DurationBatchSampler(Sampler[list[int]]):
    """Batches over a fixed set of rows; the epoch (``set_epoch``) reseeds the shuffle."""

    def __init__(self, durations: list[float], plan: BatchPlan, mark_padding: bool = False) -> None:
        self.durations, self.plan, self.epoch = durations, plan, 0
        self.mark_padding = mark_padding  # evaluation: DDP padding batches hold ``Padded`` indices
        self.sampler = _EpochHook(self)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.plan.seed + self.epoch)
        order = list(range(len(self.durations)))
        if self.plan.bucketing:
            order.sort(key=lambda i: self.durations[i])
        elif self.plan.shuffle:
            rng.shuffle(order)
        batches = pack(order, self.durations, self.plan)
        if self.plan.shuffle:
            rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(shard(self._batches(), *rank_world(), mark=self.mark_padding))

    def __len__(self) -> int:
        return math.ceil(len(self._batches()) / rank_world()[1])


class EpochBatchSampler(DurationBatchSampler):
    """Training batches over a corpus mix, drawn anew each epoch (see the module docstring).

    ``sources`` are ``(first_row, n_rows, draws_per_epoch)``; the first source is the main corpus,
    drawn whole. ``clean_batches``: items of the first that many batches (counted over the run) are
    marked not to be augmented.
    """

    def __init__(self, durations: list[float], plan: BatchPlan, sources: list[tuple[int, int, int]],
                 clean_batches: int = 0) -> None:
        super().__init__(durations, plan)
        self.sources, self.clean_batches = sources, clean_batches

    def _draw(self, rng: random.Random) -> list[int]:
        rows: list[int] = []
        for s, (first, n, draws) in enumerate(self.sources):
            if draws >= n:
                rows.extend(range(first, first + n))
                draws -= n
                if draws == 0:
                    continue
            # a fixed permutation per source, walked in epoch-sized windows (each row once per pass)
            perm = list(range(first, first + n))
            random.Random(self.plan.seed * 7919 + s).shuffle(perm)
            start = (self.epoch * draws) % n
            rows.extend(perm[(start + k) % n] for k in range(draws))
        return rows

    def _batches(self) -> list[list[int]]:  # type: ignore[override]
        rng = random.Random(self.plan.seed * 1_000_003 + self.epoch)
        rows = self._draw(rng)
        if self.plan.bucketing:
            jitter = {i: self.durations[i] * rng.uniform(1 - BUCKET_JITTER, 1 + BUCKET_JITTER) for i in rows}
            rows.sort(key=jitter.__getitem__)
        else:
            rng.shuffle(rows)
        batches = pack(rows, self.durations, self.plan)
        rng.shuffle(batches)
        if self.plan.sortagrad and self.epoch == 0:  # SortaGrad (Amodei et al. 2016): short ones first,
            batches.sort(key=lambda b: max(self.durations[i] for i in b))  # easy CTC alignments early
        return batches

    def epoch_audio_s(self) -> tuple[float, int]:
        """Training audio seconds and batches of the current epoch's draw."""
        batches = self._batches()
        return sum(self.durations[i] for b in batches for i in b), len(batches)

    def __iter__(self) -> Iterator[list[ItemKey]]:  # type: ignore[override]
        rank, world = rank_world()
        batches = shard(self._batches(), rank, world)
        done = self.epoch * len(batches)  # batches this rank ran in earlier epochs (draw sizes are stable)
        for pos, batch in enumerate(batches):
            aug = done + pos >= self.clean_batches
            yield [ItemKey(i, self.epoch, pos, aug) for i in batch]
