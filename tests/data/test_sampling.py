"""Training batches: Lightning's epoch hook reaches them, the corpus mix is drawn by weight, items
carry their augmentation seed and clean-step flag, DDP ranks run equal step counts."""
from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader

from asr_tune.data.augment import Augmenter, add_noise, reverberate, vtlp, vtlp_positions
from asr_tune.config import FeatureConfig
from asr_tune.data.sampling import BatchPlan, DurationBatchSampler, EpochBatchSampler, pack, shard


def _durations(n: int, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(rng.uniform(0.5, 5.0, n))


def test_lightning_set_epoch_reaches_the_batch_sampler() -> None:
    """Lightning calls set_epoch on ``batch_sampler.sampler`` only: each epoch must differ."""
    d = _durations(200)
    sampler = EpochBatchSampler(d, BatchPlan(20.0, 0, True, True, 0), [(0, 200, 200)])
    loader = DataLoader(list(range(200)), batch_sampler=sampler, collate_fn=lambda x: x)
    epochs = []
    for e in range(3):
        _set_sampler_epoch(loader, e)
        epochs.append([tuple(k.row for k in b) for b in sampler])
    assert sampler.epoch == 2
    assert epochs[0] != epochs[1] != epochs[2]
    assert set(epochs[0]) != set(epochs[1])  # batch composition changes too (jittered buckets)
    for ep in epochs:  # every main row once per epoch
        assert sorted(r for b in ep for r in b) == list(range(200))


def test_fixed_sampler_epoch_hook_reshuffles() -> None:
    d = _durations(100)
    s = DurationBatchSampler(d, BatchPlan(15.0, 0, True, True, 3))
    loader = DataLoader(list(range(100)), batch_sampler=s, collate_fn=lambda x: x)
    _set_sampler_epoch(loader, 0)
    a = list(s)
    _set_sampler_epoch(loader, 1)
    assert list(s) != a


def test_mix_draws_by_weight_and_cycles_through_the_extra_corpus() -> None:
    d = _durations(100 + 400)
    sampler = EpochBatchSampler(d, BatchPlan(30.0, 0, True, True, 0), [(0, 100, 100), (100, 400, 50)])
    seen = Counter()
    for e in range(8):
        sampler.set_epoch(e)
        rows = [k.row for b in sampler for k in b]
        assert sum(r < 100 for r in rows) == 100 and sum(r >= 100 for r in rows) == 50
        seen.update(r for r in rows if r >= 100)
    assert len(seen) == 400 and set(seen.values()) == {1}  # 8 epochs x 50 = one pass, no repeats


def test_sortagrad_runs_the_first_epoch_shortest_first_then_shuffles() -> None:
    d = _durations(300)
    longest = lambda batch: max(d[k.row] for k in batch)  # noqa: E731
    sampler = EpochBatchSampler(d, BatchPlan(20.0, 0, True, True, 0, sortagrad=True), [(0, 300, 300)])
    first = [longest(b) for b in sampler]
    assert first == sorted(first)
    sampler.set_epoch(1)
    later = [longest(b) for b in sampler]
    assert later != sorted(later)  # shuffled again from the second epoch on
    plain = EpochBatchSampler(d, BatchPlan(20.0, 0, True, True, 0), [(0, 300, 300)])
    assert [longest(b) for b in plain] != first  # off by default


def test_items_carry_seed_keys_and_clean_flag() -> None:
    d = _durations(60)
    sampler = EpochBatchSampler(d, BatchPlan(10.0, 0, True, True, 0), [(0, 60, 60)], clean_batches=5)
    batches = list(sampler)
    flags = [b[0].augment for b in batches]
    assert flags[:5] == [False] * 5 and all(flags[5:])
    assert [b[0].position for b in batches] == list(range(len(batches)))
    sampler.set_epoch(1)
    assert all(k.augment and k.epoch == 1 for b in sampler for k in b)


def test_pack_respects_the_audio_cap_and_shard_gives_equal_steps() -> None:
    d = _durations(50)
    batches = pack(sorted(range(50), key=d.__getitem__), d, BatchPlan(8.0, 0, True, False, 0))
    for b in batches:
        assert len(b) == 1 or max(d[i] for i in b) * len(b) <= 8.0
    parts = [shard(batches, r, 3) for r in range(3)]
    assert len({len(p) for p in parts}) == 1
    assert {i for p in parts for b in p for i in b} == set(range(50))


def test_augmentations_do_what_they_say() -> None:
    rng = np.random.default_rng(0)
    logp = torch.from_numpy(rng.normal(0, 1, (120, 40))).float()
    assert torch.allclose(vtlp(logp, 1.0, 8000), logp, atol=1e-4)
    pos = vtlp_positions(40, 8000, 1.1)
    assert (np.diff(pos) >= 0).all() and pos[20] < 20  # alpha > 1 reads lower bands
    power = logp.exp().sum()
    noisy = add_noise(logp, 0.0, rng)  # 0 dB: noise power equals signal power on average
    assert 1.7 < float(noisy.exp().sum() / power) < 2.3
    impulse = torch.full((100, 4), -20.0)
    impulse[10] = 0.0
    tail = reverberate(impulse, rt60_s=0.3, drr_db=3.0, hop_s=0.01).exp()
    assert torch.allclose(tail[10], torch.ones(4), atol=1e-3) and (tail[:10] < 1e-6).all()
    assert (tail[11] > tail[20]).all() and (tail[20] > tail[35]).all()  # decays after the event
    assert not Augmenter(FeatureConfig(), 8000).active
    assert Augmenter(FeatureConfig(vtlp=0.1), 8000).active
