"""Conformer-CTC acoustic model: conv subsampling -> ``torchaudio.models.Conformer`` -> CTC head.

Shapes: features ``(batch, frames, n_mels)`` + ``lengths (batch,)`` ->
log-probabilities ``(batch, frames // subsampling, vocab)`` + ``out_lengths (batch,)``.
"""
from __future__ import annotations

import torch
from torch import nn
from torchaudio.models import Conformer

from asr_tune.config import ModelConfig


def _conv_out(n: torch.Tensor | int, times: int) -> torch.Tensor | int:
    for _ in range(times):
        n = (n - 1) // 2  # kernel 3, stride 2, no padding
    return n


class ConvSubsampling(nn.Module):
    """Stacked stride-2 Conv2d (x4 or x8 in time and frequency), then a Linear to ``d_model``."""

    def __init__(self, n_mels: int, d_model: int, factor: int, channels: int | None = None) -> None:
        super().__init__()
        self.times = {4: 2, 8: 3}[factor]
        ch = channels or d_model
        layers: list[nn.Module] = []
        for i in range(self.times):
            layers += [nn.Conv2d(1 if i == 0 else ch, ch, kernel_size=3, stride=2), nn.ReLU()]
        self.conv = nn.Sequential(*layers)
        freq = _conv_out(n_mels, self.times)
        if freq < 1:
            raise ValueError(f"n_mels={n_mels} too small for subsampling x{factor}")
        self.out = nn.Linear(ch * int(freq), d_model)

    def out_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return _conv_out(lengths, self.times).clamp_min(1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = y.shape
        return self.out(y.transpose(1, 2).reshape(b, t, c * f)), self.out_lengths(lengths).clamp_max(t)


class ConformerCTC(nn.Module):
    """The acoustic model; every size comes from ``ModelConfig``."""

    def __init__(self, cfg: ModelConfig, n_mels: int, vocab_size: int) -> None:
        super().__init__()
        self.subsampling = ConvSubsampling(n_mels, cfg.d_model, cfg.subsampling, cfg.subsampling_channels or None)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder = Conformer(
            input_dim=cfg.d_model, num_heads=cfg.num_heads, ffn_dim=cfg.d_model * cfg.ffn_mult,
            num_layers=cfg.num_layers, depthwise_conv_kernel_size=cfg.conv_kernel, dropout=cfg.dropout)
        self.ctc_head = nn.Linear(cfg.d_model, vocab_size)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, out_len = self.subsampling(feats, lengths)
        x = x[:, : int(out_len.max())]  # torchaudio's padding mask is sized by the longest length
        x, out_len = self.encoder(self.dropout(x), out_len)
        return self.ctc_head(x).float().log_softmax(-1), out_len


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
