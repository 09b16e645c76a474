"""End to end on real audio: int8 tracks float, the report tells the truth, artefacts round-trip."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import onnx
import pytest
import torch

from asr_tune.quant import artifact as art
from asr_tune.quant.graph import INT8_KERNELS
from asr_tune.quant.runtime import make_session
from quant_helpers import run_quantize


def _real_batch(module, corpus, n=6):
    from asr_tune.data.audio import load_audio

    rows = [json.loads(l) for l in Path(corpus["eval"]).read_text().splitlines()][:n]
    wavs = [load_audio(r["audio_filepath"], module.cfg.data.sample_rate) for r in rows]
    lens = torch.tensor([len(w) for w in wavs])
    wav = torch.zeros(len(wavs), int(lens.max()))
    for i, w in enumerate(wavs):
        wav[i, : len(w)] = w
    return wav, lens


def _optimized_consumers(model_path: Path) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        make_session(model_path, 1, optimized_path=Path(tmp) / "opt.onnx")
        graph = onnx.load(str(Path(tmp) / "opt.onnx")).graph
    out: dict[str, str] = {}
    for node in graph.node:
        for i in node.input:
            out.setdefault(i, node.op_type)
    return out


@pytest.mark.parametrize("run", ["dyn_run", "static_run"])
def test_int8_tracks_float_on_real_audio(run, request, ckpt, corpus):
    from asr_tune.model.lightning_module import load_asr_checkpoint

    report, out = request.getfixturevalue(run)
    assert report.accepted and (out / art.MARKER_FILE).is_file()
    assert report.output_error["rel_l2"] < 0.05 and report.export_check["max_abs"] < 1e-3
    float_module = load_asr_checkpoint(ckpt)
    q = art.load_quantized(out)
    wav, lens = _real_batch(float_module, corpus)
    with torch.no_grad():
        lp_f, len_f = float_module(wav, lens)
    lp_q, len_q = q(wav, lens)
    assert torch.equal(len_f, len_q)
    mask = torch.arange(lp_f.shape[1])[None, :] < len_f[:, None]
    rel = (lp_q - lp_f)[mask].norm() / lp_f[mask].norm()
    assert 0 < rel < 0.05, f"relative error of int8 log-probs {rel:.4f}"  # > 0: it is not the float model
    assert report.macs["int8_mac_share"] > 0.9


def test_report_coverage_matches_the_graph_that_runs(dyn_run):
    report, out = dyn_run
    consumers = _optimized_consumers(out / art.MODEL_FILE)
    weighted = [o for o in report.ops if o["macs"] and o["group"]]
    assert weighted
    for o in weighted:
        if o["precision"] == "int8":
            w = f"{o['name']}.weight_quantized"
            assert consumers.get(w) in INT8_KERNELS, (o["name"], consumers.get(w))
        else:
            assert f"{o['name']}.weight_quantized" not in consumers
    total = sum(o["macs"] for o in report.ops)
    int8 = sum(o["macs"] for o in report.ops if o["precision"] == "int8")
    assert report.macs["int8_mac_share"] == pytest.approx(int8 / total)
    kinds = {o["kind"]: o["precision"] for o in report.ops}
    for float_kind in ("LayerNormalization", "Softmax", "LogSoftmax", "depthwise Conv1d",
                       "attention scores MatMul (activation x activation)"):
        assert kinds[float_kind] == "float"
    assert all(o["why"] for o in report.ops)


def test_keeping_a_linear_group_float_lowers_the_int8_share(dyn_run, ckpt, corpus, tmp_path):
    base, _ = dyn_run
    report = run_quantize(ckpt, corpus, tmp_path / "kf", keep_float=["layers.0.ffn1"], sensitivity=False)
    group_macs = report.macs["per_group"]["layers.0.ffn1"]
    assert report.macs["int8_macs"] == base.macs["int8_macs"] - group_macs
    assert report.int8_mac_share < base.int8_mac_share
    rows = [o for o in report.ops if o["group"] == "layers.0.ffn1"]
    assert [o["name"] for o in rows] == ["layers.0.ffn1.fc1", "layers.0.ffn1.fc2"]
    assert all(o["precision"] == "float" and "keep_float" in o["why"] for o in rows)
    assert report.kept_float == {"layers.0.ffn1": "keep_float (requested)"}
    consumers = _optimized_consumers(tmp_path / "kf" / art.MODEL_FILE)
    assert "layers.0.ffn1.fc1.weight_quantized" not in consumers
    assert consumers.get("layers.1.ffn1.fc1.weight_quantized") in INT8_KERNELS
    assert report.size["int8_onnx_bytes"] > base.size["int8_onnx_bytes"]


def test_sensitivity_scan_ranks_every_group(dyn_run):
    report, _ = dyn_run
    groups = [g["group"] for g in report.groups if g["precision"] == "int8"]
    assert sorted(s["group"] for s in report.sensitivity) == sorted(groups)
    assert [s["rank"] for s in report.sensitivity] == list(range(1, len(groups) + 1))
    assert all(s["kl"] >= 0 for s in report.sensitivity)


def test_report_sizes_latency_and_files(dyn_run, ckpt):
    report, out = dyn_run
    assert art.sha256_file(ckpt) == report.checkpoint_sha256  # the float checkpoint is untouched
    d = json.loads((out / art.REPORT_FILE).read_text())
    assert d["accepted"] is True and d["gate"]["passed"] is True
    assert 0 < d["float_wer"] < 100  # a real model: the gate compares two meaningful WERs
    assert d["size"]["float_onnx_bytes"] == (out / art.FLOAT_FILE).stat().st_size
    assert d["size"]["int8_onnx_bytes"] == (out / art.MODEL_FILE).stat().st_size
    assert d["size"]["ratio"] < 0.4
    for k in ("float_torch", "float_onnx", "int8_onnx"):
        assert d["latency"][k]["median_s"] > 0 and d["latency"]["rtf"][k] > 0
    assert "int8" in report.table() and "ACCEPTED" in report.table()


def test_save_load_round_trip(dyn_run, corpus):
    from asr_tune.training.run import transcribe_rows
    from asr_tune.data.manifest import load_corpus

    report, out = dyn_run
    for p in (out, out / art.META_FILE, out / art.MODEL_FILE):
        assert art.is_quantized_artifact(p)
    assert not art.is_quantized_artifact(corpus["eval"]) and not art.is_quantized_artifact(corpus["dir"])
    q = art.load_quantized(out)
    assert q.cfg.features.n_mels == 40 and q.tok.state() == json.loads((out / "meta.json").read_text())["tokenizer"]
    rows = load_corpus(corpus["eval"])
    hyps = transcribe_rows(q, rows, device="cpu")  # the `asr-tune evaluate` path
    assert len(hyps) == len(rows)
    wav, lens = _real_batch(q, corpus)
    assert q.transcribe(wav, lens) == q.transcribe(wav, lens)
    again = art.load_quantized(out / art.MODEL_FILE)
    assert torch.equal(again(wav, lens)[0], q(wav, lens)[0])


def test_tampered_artifact_is_refused(dyn_run, tmp_path):
    import shutil

    from asr_tune.errors import QuantizationError

    _, out = dyn_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with open(copy / art.MODEL_FILE, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(QuantizationError, match="checksum"):
        art.load_quantized(copy)


def test_cli_evaluate_scores_the_int8_artifact(dyn_run, corpus, tmp_path, capsys):
    """`asr-tune evaluate <int8 artefact>` works like it does on a float checkpoint."""
    from asr_tune.cli import main

    report, out = dyn_run
    assert main(["evaluate", str(out), "--data", str(corpus["eval"]), "--out", str(tmp_path / "w.json")]) == 0
    scored = json.loads((tmp_path / "w.json").read_text())
    assert scored["wer"] == pytest.approx(report.to_dict()["int8_wer"])
    assert "WER" in capsys.readouterr().out
