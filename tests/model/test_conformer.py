"""The Conformer-CTC encoder: padding never changes an utterance's output, and without padding the
layer loop is torchaudio's ``ConformerLayer.forward``."""
from __future__ import annotations

import pytest
import torch

from asr_tune.config import ModelConfig
from asr_tune.model.conformer import ConformerCTC


def _model(**kw) -> ConformerCTC:
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, num_layers=2, num_heads=2, ffn_mult=2, conv_kernel=15, dropout=0.0, **kw)
    return ConformerCTC(cfg, n_mels=40, vocab_size=12).eval()


@pytest.mark.parametrize("sub", [4, 8])
def test_an_utterance_decodes_the_same_alone_and_padded_in_a_batch(sub: int) -> None:
    """A short utterance next to a long one in a batch (zero-padded features, as the data module
    yields them) gets the log-probs it gets alone: torchaudio's conv module would read the padding
    within ``conv_kernel // 2`` frames of its end (max |diff| ~7e-2 on this model before the fix)."""
    model = _model(subsampling=sub)
    gen = torch.Generator().manual_seed(1)
    short, long = torch.randn(1, 120, 40, generator=gen), torch.randn(1, 300, 40, generator=gen)
    batch = torch.zeros(2, 300, 40)
    batch[0, :120], batch[1] = short[0], long[0]
    with torch.no_grad():
        alone, n_alone = model(short, torch.tensor([120]))
        both, n_both = model(batch, torch.tensor([120, 300]))
    n = int(n_alone[0])
    assert int(n_both[0]) == n
    assert torch.allclose(alone[0, :n], both[0, :n], atol=1e-5), (alone[0, :n] - both[0, :n]).abs().max()


def test_without_padding_the_layer_loop_is_torchaudios() -> None:
    """Same weights, a batch of equal lengths: our loop and ``torchaudio.models.Conformer.forward``
    agree, so checkpoints trained with either mean the same model."""
    model = _model()
    x = torch.randn(3, 50, 32)
    lengths = torch.full((3,), 50)
    from asr_tune.model.conformer import conformer_layer

    with torch.no_grad():
        ref, _ = model.encoder(x, lengths)
        pad = torch.zeros(3, 50, dtype=torch.bool)
        keep = torch.ones(3, 1, 50)
        h = x.transpose(0, 1)
        for layer in model.encoder.conformer_layers:
            h = conformer_layer(layer, h, pad, keep)
    assert torch.allclose(ref, h.transpose(0, 1), atol=1e-5)
