"""Conformer-CTC acoustic model: conv subsampling -> ``torchaudio.models.Conformer`` -> CTC head.

Shapes: features ``(batch, frames, n_mels)`` + ``lengths (batch,)`` ->
log-probabilities ``(batch, frames // subsampling, vocab)`` + ``out_lengths (batch,)``.

The encoder's layers are torchaudio's ``ConformerLayer`` modules (weights, names and checkpoints as
torchaudio builds them), run by :func:`conformer_layer` instead of ``ConformerLayer.forward``: the one
difference is that padded frames are zeroed before the depthwise convolution. torchaudio's conv module
does not mask them, so a frame near the end of a short utterance read up to ``conv_kernel // 2`` frames
of whatever the padding held, and an utterance's transcript depended on the batch it was decoded in.
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
        x = self.dropout(x[:, : int(out_len.max())])  # (B, T', D); the masks are sized by the longest
        pad = torch.arange(x.shape[1], device=x.device)[None, :] >= out_len[:, None]  # (B, T') True = pad
        keep = (~pad).to(x.dtype)[:, None, :]  # (B, 1, T'), the conv layout
        x = x.transpose(0, 1)  # (T', B, D), torchaudio's layer layout
        for layer in self.encoder.conformer_layers:
            x = conformer_layer(layer, x, pad, keep)
        return self.ctc_head(x.transpose(0, 1)).float().log_softmax(-1), out_len


def conformer_layer(layer: nn.Module, x: torch.Tensor, pad: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """torchaudio ``ConformerLayer.forward`` with padding-masked convolution.

    ``x (T, B, D)``; ``pad (B, T)`` True at padded frames (the attention key mask); ``keep (B, 1, T)``
    1.0 at valid frames. Macaron FFN, self-attention, convolution, FFN, final LayerNorm.
    """
    x = x + 0.5 * layer.ffn1(x)
    if layer.convolution_first:
        x = x + masked_conv(layer.conv_module, x, keep)
    h = layer.self_attn_layer_norm(x)
    h, _ = layer.self_attn(query=h, key=h, value=h, key_padding_mask=pad, need_weights=False)
    x = x + layer.self_attn_dropout(h)
    if not layer.convolution_first:
        x = x + masked_conv(layer.conv_module, x, keep)
    x = x + 0.5 * layer.ffn2(x)
    return layer.final_layer_norm(x)


def masked_conv(conv_module: nn.Module, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """torchaudio's conformer conv module on ``x (T, B, D)``, padded frames zeroed before the
    depthwise conv: pointwise conv, GLU, [mask], depthwise conv, norm, SiLU, pointwise conv, dropout."""
    seq = conv_module.sequential
    y = conv_module.layer_norm(x.transpose(0, 1)).transpose(1, 2)  # (B, D, T)
    y = seq[1](seq[0](y)) * keep
    for m in seq[2:]:
        y = m(y)
    return y.permute(2, 0, 1)  # (T, B, D)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
