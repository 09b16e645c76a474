"""Log-mel features, per-utterance normalisation and SpecAugment (torchaudio).

Shapes: waveforms ``(batch, samples)`` with ``lengths (batch,)`` -> features ``(batch, frames, n_mels)``
with ``frame_lengths (batch,)``. SpecAugment is a separate module applied in training only.
"""
from __future__ import annotations

import math

import torch
import torchaudio
from torch import nn

from asr_tune.config import FeatureConfig


class LogMel(nn.Module):
    """Waveform -> normalised log-mel frames, with exact frame lengths for padded batches."""

    def __init__(self, cfg: FeatureConfig, sample_rate: int) -> None:
        super().__init__()
        self.win = int(round(cfg.win_ms * sample_rate / 1000))
        self.hop = int(round(cfg.hop_ms * sample_rate / 1000))
        n_fft = 1 << (self.win - 1).bit_length()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, win_length=self.win, hop_length=self.hop,
            n_mels=cfg.n_mels, center=True, power=2.0)
        self.normalize = cfg.normalize == "utterance"
        self.floor_below_max = cfg.top_db * math.log(10.0) / 10.0  # dB of power -> natural log

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths, self.hop, rounding_mode="floor") + 1

    def log_power(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log mel power ``(B, T, n_mels)`` before normalisation (what the feature cache stores)."""
        with torch.autocast(device_type=wav.device.type, enabled=False):
            feats = self.mel(wav.float()).clamp_min(1e-10).log().transpose(1, 2)  # (B, T, F)
        return feats, self.frame_lengths(lengths).clamp_max(feats.shape[1])

    def finish(self, feats: torch.Tensor, flen: torch.Tensor) -> torch.Tensor:
        """Floor at ``top_db`` below each utterance's loudest value (if set), then per-utterance
        mean/variance normalisation over the valid frames; padding set to 0."""
        mask = (torch.arange(feats.shape[1], device=feats.device)[None, :] < flen[:, None]).unsqueeze(-1)
        if self.floor_below_max > 0:
            loudest = feats.masked_fill(~mask, float("-inf")).amax(dim=(1, 2), keepdim=True)
            feats = torch.maximum(feats, loudest - self.floor_below_max)
        if self.normalize:
            n = flen.clamp_min(1).to(feats.dtype)[:, None, None]
            mean = (feats * mask).sum(1, keepdim=True) / n
            var = (((feats - mean) * mask) ** 2).sum(1, keepdim=True) / n
            feats = (feats - mean) / (var + 1e-5).sqrt()
        return feats * mask

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, flen = self.log_power(wav, lengths)
        return self.finish(feats, flen), flen


class SpecAugment(nn.Module):
    """Frequency and time masking (Park et al. 2019) on ``(batch, frames, n_mels)`` features."""

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        self.freq = nn.ModuleList(
            torchaudio.transforms.FrequencyMasking(cfg.freq_mask_width, iid_masks=True)
            for _ in range(cfg.freq_masks) if cfg.freq_mask_width > 0)
        self.time = nn.ModuleList(
            torchaudio.transforms.TimeMasking(cfg.time_mask_width, iid_masks=True)
            for _ in range(cfg.time_masks) if cfg.time_mask_width > 0)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if not self.training or (not self.freq and not self.time):
            return feats
        x = feats.transpose(1, 2).unsqueeze(1)  # (B, 1, F, T), the layout torchaudio masks expect
        for m in self.freq:
            x = m(x)
        for m in self.time:
            x = m(x)
        return x.squeeze(1).transpose(1, 2)
