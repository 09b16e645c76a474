"""In a search the int8 stage chooses on dev and reports test once: the sensitivity scan, the
fallback and the gate decode the dev split only; the test split is decoded by the chosen int8 model
exactly once (``report.extra["held_out"]``)."""
from __future__ import annotations

from pathlib import Path

from asr_tune.quant import pipeline, sensitivity
from quant_helpers import run_quantize


def _n_lines(path: Path) -> int:
    return sum(1 for line in Path(path).read_text().splitlines() if line.strip())


def test_choose_on_dev_report_test_once(ckpt, corpus, tmp_path, monkeypatch):
    n_dev, n_test = _n_lines(corpus["dev"]), _n_lines(corpus["eval"])
    assert n_dev != n_test  # so a decode's size says which split it was
    decoded: dict[str, list[int]] = {"candidates": [], "pipeline": []}

    def counting(real, where):
        def run(session, batches):
            decoded[where].append(sum(len(b.texts) for b in batches))
            return real(session, batches)
        return run

    monkeypatch.setattr(sensitivity, "run_onnx", counting(sensitivity.run_onnx, "candidates"))
    monkeypatch.setattr(pipeline, "run_onnx", counting(pipeline.run_onnx, "pipeline"))
    report = run_quantize(ckpt, corpus, tmp_path / "int8", sensitivity=True, max_wer_delta=9.0,
                          select=corpus["dev"])
    assert len(decoded["candidates"]) > 5 and set(decoded["candidates"]) == {n_dev}  # scan + gate
    assert decoded["pipeline"].count(n_test) == 1  # the held-out split: once, the chosen model
    assert report.gate.n_utts == n_dev  # the gate decided on dev
    held = report.extra["held_out"]
    assert held["n_utts"] == n_test and held["data"] == str(corpus["eval"])
    assert 0 < held["float_wer"] < 100 and held["wer_delta"] == held["int8_wer"] - held["float_wer"]
    assert report.data["select_utterances"] == n_dev
