"""The WER gate: the pure decision, a failing stage on the CLI, and the automatic fallback."""
from __future__ import annotations

import argparse
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from asr_tune.errors import AsrTuneError, QuantizationError
from asr_tune.model.decoding import WERStats
from asr_tune.quant import artifact as art
from asr_tune.quant import sensitivity
from asr_tune.quant.report import wer_gate
from quant_helpers import run_quantize


def _stats(wer: float, n_words: int = 200, n_utts: int = 100) -> WERStats:
    return WERStats(wer, 0, 0, 0, n_words, n_utts)


def test_gate_decision():
    assert wer_gate(_stats(10.0), _stats(10.3), 0.3).passed  # boundary passes
    g = wer_gate(_stats(10.0), _stats(10.31), 0.3)
    assert not g.passed and g.delta == pytest.approx(0.31)
    assert wer_gate(_stats(10.0), _stats(9.0), 0.0).passed  # int8 better
    assert not wer_gate(_stats(10.0), _stats(10.5), 0.0).passed
    with pytest.raises(QuantizationError, match=">= 0"):
        wer_gate(_stats(10.0), _stats(10.0), -1)
    with pytest.raises(QuantizationError, match="different utterances"):
        wer_gate(_stats(10.0), _stats(10.0, n_utts=99), 0.3)


def _main(argv: list[str]) -> int:
    """What ``asr_tune.cli.main`` does with a registered subcommand (errors -> exit 2)."""
    from asr_tune.quant.commands import register

    parser = argparse.ArgumentParser(prog="asr-tune")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except AsrTuneError as err:
        print(f"error: {err}")
        return 2


def _perturbed_scales(real):
    """Real ORT quantization, then every weight scale multiplied by a random factor (0.25x-4x): a
    broken int8 model whose WER the gate must see."""
    def quantize_model(src, dst, *a, **k):
        path = real(src, dst, *a, **k)
        model = onnx.load(str(path))
        rng = np.random.default_rng(0)
        n = 0
        for init in model.graph.initializer:
            if init.name.endswith("weight_scale"):
                s = numpy_helper.to_array(init)
                init.CopyFrom(numpy_helper.from_array(
                    (s * np.exp2(rng.uniform(-2, 2, s.shape))).astype(s.dtype), init.name))
                n += 1
        assert n, "no weight scales found in the int8 graph"
        onnx.save(model, str(path))
        return path
    return quantize_model


def test_failing_gate_exits_nonzero_and_never_marks_accepted(ckpt, corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sensitivity, "quantize_model", _perturbed_scales(sensitivity.quantize_model))
    out = tmp_path / "int8"
    (out).mkdir()
    (out / art.MARKER_FILE).write_text("stale marker from an earlier run")
    before = art.sha256_file(ckpt)
    rc = _main(["quantize", str(ckpt), "--calib", str(corpus["calib"]), "--data", str(corpus["eval"]),
                "--max-wer-delta", "0", "--no-auto-fallback", "--skip-sensitivity", "--latency-repeats", "2",
                "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 2 and "REJECTED" in printed and "error: int8 model rejected" in printed
    assert art.sha256_file(ckpt) == before
    assert not (out / art.MARKER_FILE).exists() and not (out / art.MODEL_FILE).exists()
    assert (out / art.REJECTED_FILE).is_file()
    report = json.loads((out / art.REPORT_FILE).read_text())
    assert report["accepted"] is False and report["gate"]["passed"] is False
    assert "auto_fallback off" in report["reason"] and report["sensitivity"] == []
    assert 0 < report["float_wer"] < 100 and report["wer_delta"] > 5  # the real WER got worse
    assert json.loads((out / art.META_FILE).read_text())["accepted"] is False
    with pytest.raises(QuantizationError, match="not accepted"):
        art.load_quantized(out)
    assert art.load_quantized(out, require_accepted=False).accepted is False


def test_fallback_keeps_the_broken_group_float(ckpt, corpus, tmp_path, monkeypatch):
    from asr_tune.model.lightning_module import load_asr_checkpoint

    real = sensitivity.quantize_model
    letter = load_asr_checkpoint(ckpt).tok.encode("e")[0]

    def broken_ctc_head(src, dst, mode, exclude, include, *a, **k):
        """Real ORT quantization, but an int8 ctc_head loses the blank: it emits 'e' for every word."""
        path = real(src, dst, mode, exclude, include, *a, **k)
        if "ctc_head" in include:
            model = onnx.load(str(path))
            for init in model.graph.initializer:
                if init.name == "ctc_head.bias":
                    b = numpy_helper.to_array(init).copy()
                    b[0] -= 40.0
                    b[letter] += 20.0
                    init.CopyFrom(numpy_helper.from_array(b, init.name))
            onnx.save(model, str(path))
        return path

    monkeypatch.setattr(sensitivity, "quantize_model", broken_ctc_head)
    report = run_quantize(ckpt, corpus, tmp_path / "fb", max_wer_delta=0.3, sensitivity=False)
    assert report.accepted
    assert report.attempts[0]["passed"] is False and report.attempts[-1]["passed"] is True
    assert report.sensitivity[0]["group"] == "ctc_head" and report.sensitivity[0]["wer_delta"] > 0
    assert list(report.kept_float) == ["ctc_head"] and "auto fallback" in report.kept_float["ctc_head"]
    head = [o for o in report.ops if o["group"] == "ctc_head"]
    assert head and all(o["precision"] == "float" for o in head)
    assert report.gate.delta <= 0.3


def test_cli_rejects_invalid_threshold(ckpt, corpus, capsys):
    rc = _main(["quantize", str(ckpt), "--calib", str(corpus["calib"]), "--data", str(corpus["eval"]),
                "--max-wer-delta", "-1"])
    out = capsys.readouterr().out
    assert rc == 2 and "error: quantize --max-wer-delta" in out and len(out.strip().splitlines()) == 1
