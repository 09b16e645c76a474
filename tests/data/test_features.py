"""Log-mel front end: the ``top_db`` floor (one floor depth for clean and noisy recordings)."""
from __future__ import annotations

import math

import torch

from asr_tune.config import FeatureConfig
from asr_tune.data.features import LogMel


def _tone_with_digital_silence(sr: int = 8000) -> torch.Tensor:
    t = torch.arange(sr) / sr
    wav = 0.01 * torch.sin(2 * math.pi * 440 * t)
    wav[sr // 4: sr // 2] = 0.0  # a stretch of exact zeros, as between concatenated digits
    return wav


def test_top_db_floors_each_utterance_below_its_loudest_value_only() -> None:
    wav = _tone_with_digital_silence()
    batch = torch.stack([wav, torch.cat([wav[:4000], torch.zeros(4000)])])
    lengths = torch.tensor([8000, 4000])
    fe = LogMel(FeatureConfig(n_mels=40, top_db=40.0, normalize="none"), 8000)
    logp, flen = fe.log_power(batch, lengths)
    floored = fe.finish(logp, flen)
    for b in range(2):
        valid = floored[b, : int(flen[b])]
        span_db = float(valid.max() - valid.min()) * 10 / math.log(10)
        assert 39.9 < span_db < 40.1  # the zeros sat ~80 dB down (log clamp); now exactly 40 dB
    assert floored[1, int(flen[1]):].abs().sum() == 0  # padding stays zero
    raw = LogMel(FeatureConfig(n_mels=40, normalize="none"), 8000)
    unfloored = raw.finish(*raw.log_power(batch, lengths))
    assert float(unfloored[0].max() - unfloored[0, : int(flen[0])].min()) * 10 / math.log(10) > 60


def test_top_db_features_do_not_depend_on_the_recording_level() -> None:
    """Without the floor, digital silence sits at the log clamp, a fixed level: a quiet recording's
    normalised features differ from a loud one's (by ~0.9 here); with it they agree."""
    wav = _tone_with_digital_silence()
    lengths = torch.tensor([8000])
    for top_db, same in ((40.0, True), (0.0, False)):
        fe = LogMel(FeatureConfig(n_mels=40, top_db=top_db), 8000)
        loud, _ = fe(wav[None] * 10.0, lengths)
        quiet, _ = fe(wav[None], lengths)
        assert torch.allclose(loud, quiet, atol=1e-3) is same, top_db
