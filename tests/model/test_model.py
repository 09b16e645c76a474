"""Features, tokenizers, Conformer-CTC shapes and CTC length handling, greedy decoding, WER."""
from __future__ import annotations

import jiwer
import pytest
import torch

from asr_tune.config import FeatureConfig, ModelConfig, TokenizerConfig
from asr_tune.model.conformer import ConformerCTC
from asr_tune.model.decoding import greedy_ctc, wer_stats
from asr_tune.data.features import LogMel, SpecAugment
from asr_tune.data.tokenizer import BLANK, CharTokenizer, tokenizer_from_state, train_tokenizer

TEXTS = ["turn on the lights", "set volume to seven", "call five two nine", "three seven one",
         "turn off the heater", "zero one two three four five six seven eight nine"] * 20


def test_logmel_frame_lengths_and_padding_masked() -> None:
    fe = LogMel(FeatureConfig(n_mels=40), 16000)
    wav = torch.randn(2, 16000)
    lens = torch.tensor([16000, 8000])
    feats, flen = fe(wav, lens)
    assert feats.shape == (2, 101, 40)
    assert flen.tolist() == [101, 51]
    assert feats[1, 51:].abs().sum() == 0  # padding frames are zero
    valid = feats[0, :101]
    assert valid.mean().abs() < 1e-3 and (valid.std(0) - 1).abs().max() < 0.05  # per-utterance norm


def test_specaugment_train_only() -> None:
    aug = SpecAugment(FeatureConfig(freq_masks=2, freq_mask_width=10, time_masks=2, time_mask_width=10))
    x = torch.ones(3, 50, 40)
    aug.train()
    assert (aug(x) == 0).any()
    aug.eval()
    assert torch.equal(aug(x), x)


def test_char_tokenizer_roundtrip_and_state() -> None:
    tok = CharTokenizer.train(TEXTS)
    ids = tok.encode("call five")
    assert BLANK not in ids
    assert tok.decode(ids) == "call five"
    assert tokenizer_from_state(tok.state()).encode("call five") == ids


def test_sentencepiece_tokenizer_trains_and_roundtrips() -> None:
    tok = train_tokenizer(TEXTS, TokenizerConfig(kind="sentencepiece", vocab_size=40))
    ids = tok.encode("set volume to nine")
    assert all(0 < i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == "set volume to nine"
    again = tokenizer_from_state(tok.state())
    assert again.encode("set volume to nine") == ids


@pytest.mark.parametrize("sub", [4, 8])
def test_conformer_ctc_shapes_and_lengths(sub: int) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, num_layers=2, num_heads=4, ffn_mult=2, conv_kernel=7, subsampling=sub)
    model = ConformerCTC(cfg, n_mels=40, vocab_size=12).eval()
    n, short = 30 * sub, 15 * sub + 1
    feats = torch.randn(2, n, 40)
    feats[1, short:] = 0  # LogMel zeroes padding frames
    lens = torch.tensor([n, short])
    lp, out_len = model(feats, lens)
    expect = model.subsampling.out_lengths(lens)
    assert lp.shape == (2, int(expect.max()), 12)
    assert out_len.tolist() == expect.tolist()
    assert torch.allclose(lp.exp().sum(-1), torch.ones(2, lp.shape[1]), atol=1e-4)
    # attention masks padding, but torchaudio's depthwise conv (unmasked) sees kernel//2 padded frames
    # at the end of a short utterance and the next layer's attention spreads that slightly: frames away
    # from the end must match closely, not bit-exactly (a known torchaudio Conformer property)
    lp_alone, _ = model(feats[1:, :short], lens[1:])
    keep = int(out_len[1]) - cfg.num_layers * (cfg.conv_kernel // 2) - 1
    assert keep > 0
    assert (lp[1, :keep] - lp_alone[0, :keep]).abs().max() < 0.05


def test_ctc_loss_finite_for_short_inputs() -> None:
    model = ConformerCTC(ModelConfig(d_model=32, num_layers=1, num_heads=2, conv_kernel=3), 40, 10)
    lp, out_len = model(torch.randn(1, 30, 40), torch.tensor([30]))
    tgt = torch.tensor([[1, 2, 3]])
    loss = torch.nn.functional.ctc_loss(lp.transpose(0, 1), tgt, out_len, torch.tensor([3]))
    assert torch.isfinite(loss)


def test_greedy_ctc_collapses_repeats_and_blanks() -> None:
    seq = torch.tensor([[0, 1, 1, 0, 1, 2, 2, 0, 0, 3, 3]])
    lp = torch.nn.functional.one_hot(seq, 5).float().log()
    assert greedy_ctc(lp, torch.tensor([11])) == [[1, 1, 2, 3]]
    assert greedy_ctc(lp, torch.tensor([6])) == [[1, 1, 2]]


def test_wer_matches_jiwer_on_known_strings() -> None:
    refs = ["one two three four", "turn on the lights", "nine"]
    hyps = ["one too three", "turn on the the lights", ""]
    stats = wer_stats(refs, hyps)
    assert stats.wer == pytest.approx(100 * jiwer.wer(refs, hyps))
    assert (stats.substitutions, stats.deletions, stats.insertions, stats.n_words) == (1, 2, 1, 9)


def test_top_substitutions_counts_word_confusions() -> None:
    from asr_tune.model.decoding import top_substitutions

    refs = ["six eight one", "six two", "nine"]
    hyps = ["eight eight one", "eight two", "five"]
    top = top_substitutions(refs, hyps)
    assert top[0] == {"ref": "six", "hyp": "eight", "count": 2}
    assert {"ref": "nine", "hyp": "five", "count": 1} in top
    assert top_substitutions(["a b"], ["a b"]) == []
