"""Band-limiting augmentation: bands below the corner untouched, the top band down by the depth."""
from __future__ import annotations

import math

import numpy as np
import torch

from asr_tune.config import FeatureConfig
from asr_tune.data.augment import Augmenter, band_centres_hz, lowpass


def test_lowpass_rolls_off_above_the_corner_only() -> None:
    logp = torch.zeros(5, 40)
    out = lowpass(logp, corner_hz=2000.0, depth_db=20.0, sample_rate=8000)
    f = band_centres_hz(40, 8000)
    below = torch.from_numpy(f <= 2000.0)
    assert torch.equal(out[:, below], logp[:, below])
    top_db = float(out[0, -1]) * 10.0 / math.log(10.0)
    ramp = (f[-1] - 2000.0) / (4000.0 - 2000.0)
    assert abs(top_db + 20.0 * ramp) < 1e-3
    assert bool((out[0, ~below].diff() <= 0).all())  # monotone roll-off


def test_augmenter_applies_lowpass_when_configured() -> None:
    cfg = FeatureConfig(lowpass_prob=1.0, lowpass_db=30.0, noise_snr_db=0.0, vtlp=0.0, reverb_prob=0.0)
    aug = Augmenter(cfg, 8000)
    assert aug.active
    logp = torch.zeros(4, cfg.n_mels)
    out = aug(logp, np.random.default_rng(0))
    assert float(out[0, -1]) < -0.1 and float(out[0, 0]) == 0.0
    assert not Augmenter(FeatureConfig(noise_snr_db=0.0), 8000).active
