"""Post-training int8 quantization of a Conformer-CTC checkpoint, gated on WER.

Usage::

    asr-tune quantize runs/train/checkpoints/best.ckpt --calib data/synth/dev.jsonl \\
        --data data/synth/test.jsonl --mode static --max-wer-delta 0.3 --out runs/train/int8

    from asr_tune import quantize
    report = quantize("best.ckpt", calib="dev.jsonl", data="test.jsonl", out_dir="int8")
    print(report.table()); report.accepted

Steps: load the checkpoint (never written to: its sha256 is checked before and after) -> export the
float acoustic model to ONNX (``export.py``) -> log-mel features of the calibration and evaluation
utterances, once -> float WER (the torch checkpoint) -> int8 candidates with onnxruntime
(``quantizer.py``): all groups but ``keep_float``; a one-group-at-a-time sensitivity scan; the
automatic fallback keeps the most sensitive groups float until the gate passes -> op table from
ORT's optimized graph, int8 MAC share, sizes, interleaved latency -> artefact + ``report.json``.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import onnx
import torch

from asr_tune.config import QuantConfig
from asr_tune.data.datamodule import DECODE_BATCH_SECONDS
from asr_tune.errors import AsrTuneError, QuantizationError
from asr_tune.model.decoding import wer_stats
from asr_tune.quant import artifact as art
from asr_tune.quant.data import CalibReader, calibration_rows, feature_batches, latency_batch, load_rows
from asr_tune.quant.export import export_onnx
from asr_tune.quant.graph import (compute_nodes, expected_groups, group_macs, int8_kernels, list_groups,
                                  mac_summary, measure_macs, op_table, resolve_keep_float)
from asr_tune.quant.report import QuantReport
from asr_tune.quant.runtime import (compare_outputs, cpu_info, has_vnni, interleaved_latency, make_session,
                                    run_onnx, run_torch, transcripts)
from asr_tune.quant.sensitivity import CandidateRunner, fallback_search, sensitivity_scan
from asr_tune.staging import staged_dir

log = logging.getLogger(__name__)

MAC_REF_SECONDS = 2.0
LATENCY_BATCH_UTTS = 8


def _load_module(checkpoint: Path):
    from asr_tune.model.lightning_module import load_asr_checkpoint

    try:
        return load_asr_checkpoint(checkpoint)
    except AsrTuneError as err:
        raise QuantizationError(f"cannot quantize: {err}") from None
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise QuantizationError(f"{checkpoint}: not a checkpoint this int8 stage supports ({err})") from None


def _latency(module, int8_path: Path, float_path: Path, batch, threads: int, repeats: int) -> dict:
    float_sess, int8_sess = make_session(float_path, threads), make_session(int8_path, threads)
    feeds = {"feats": batch.feats, "lengths": batch.lengths}
    feats, lens = torch.from_numpy(batch.feats), torch.from_numpy(batch.lengths)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            lat = interleaved_latency({"float_torch": lambda: module.model(feats, lens),
                                       "float_onnx": lambda: float_sess.run(None, feeds),
                                       "int8_onnx": lambda: int8_sess.run(None, feeds)}, repeats)
    finally:
        torch.set_num_threads(old)
    med = {k: v["median_s"] for k, v in lat.items()}
    return {**lat, "ratio": med["int8_onnx"] / med["float_onnx"],
            "ratio_min": lat["int8_onnx"]["min_s"] / lat["float_onnx"]["min_s"],
            "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "ratio_vs_torch": med["int8_onnx"] / med["float_torch"],
            "rtf": {k: v / batch.seconds for k, v in med.items()},
            "batch_utterances": len(batch.texts), "batch_audio_s": batch.seconds,
            "batch_frames": int(batch.feats.shape[1]), "threads": threads,
            "scope": "acoustic model only (log-mel features are the same torch code for both)"}


# ----------------------------------------------------------------------------- the named steps


def _export_graph(module, out: Path, work: Path, mode: str):
    """Export the float acoustic model to ``out`` (and, for dynamic int8, a MatMul-conv variant to
    quantize from); the graph's compute nodes and quantization groups, checked against the model."""
    n_mels = module.cfg.features.n_mels
    float_path = out / art.FLOAT_FILE
    export = export_onnx(module.model, float_path, n_mels)
    src = float_path
    if mode == "dynamic":  # ConvInteger is slow on CPU: subsampling convs as im2col MatMuls
        src = Path(export_onnx(module.model, work / "model.fp32.matmul.onnx", n_mels, True).path)
    src_model = onnx.load(str(src))
    nodes = compute_nodes(src_model)
    groups = list_groups(nodes)
    if list(groups) != expected_groups(module.cfg.model.num_layers):
        raise QuantizationError(f"exported graph has unexpected groups {list(groups)}")
    return float_path, export, src, src_model, nodes, groups


def _float_reference(module, batches, float_path: Path, export, threads: int):
    """The float model's outputs and WER on the evaluation batches (the torch checkpoint), and how
    closely the fp32 ONNX export reproduces them."""
    refs = [t for b in batches for t in b.texts]
    float_out = run_torch(module.model, batches)
    float_stats = wer_stats(refs, transcripts(float_out, module.tok))
    export_check = compare_outputs(float_out, run_onnx(make_session(float_path, threads), batches))
    export_check["random_input_max_abs"] = export.max_abs_diff
    return float_out, float_stats, export_check


def _coverage(module, float_path: Path, src_model, nodes, groups, int8_path: Path, kept: dict, mode: str,
              threads: int):
    """Which ops and groups run in int8 and their share of the multiply-accumulates (on a
    ``MAC_REF_SECONDS`` input): ``(ref_frames, op rows, MAC summary, MACs per group, group rows)``."""
    ref_frames = int(module.features.frame_lengths(torch.tensor([int(MAC_REF_SECONDS * module.cfg.data.sample_rate)])))
    macs = measure_macs(float_path, module.cfg.features.n_mels, ref_frames)
    rows = op_table(src_model, nodes, macs, int8_kernels(int8_path, nodes, threads), kept, mode)
    summary = mac_summary(rows)
    per_group = group_macs(nodes, macs)
    group_rows = [{"group": g, "precision": "float" if g in kept else "int8", "macs": per_group.get(g, 0),
                   "why": kept.get(g, f"{mode} int8")} for g in groups]
    group_rows += [{"group": k, "precision": "float", "macs": v, "why": "never quantized (see ops)"}
                   for k, v in per_group.items() if k not in groups]
    return ref_frames, rows, summary, per_group, group_rows


def _verdict(gate, summary: dict, cfg: QuantConfig) -> tuple[bool, str]:
    """Accepted when the WER gate passed and some multiply-accumulates run in int8; the reason."""
    accepted = gate.passed and summary["int8_macs"] > 0
    if accepted:
        return True, f"ΔWER {gate.delta:+.2f} <= {cfg.max_wer_delta:.2f} WER points"
    if not gate.passed:
        return False, (f"ΔWER {gate.delta:+.2f} > {cfg.max_wer_delta:.2f} WER points"
                       + (" even after the automatic fallback" if cfg.auto_fallback else
                          " (auto_fallback off)"))
    return False, "no multiply-accumulate runs in int8"


def _held_out(module, batches, int8_path: Path, threads: int, data: str | Path) -> dict:
    """Float and the chosen int8 model on the held-out split, scored once (nothing chosen on it)."""
    refs = [t for b in batches for t in b.texts]
    f = wer_stats(refs, transcripts(run_torch(module.model, batches), module.tok))
    q = wer_stats(refs, transcripts(run_onnx(make_session(int8_path, threads), batches), module.tok))
    return {"data": str(data), "float_wer": f.wer, "int8_wer": q.wer, "wer_delta": q.wer - f.wer,
            "n_utts": q.n_utts, "n_words": q.n_words}


def _sizes(module, ckpt: Path, float_path: Path, int8_path: Path) -> dict:
    size = {"float_onnx_bytes": float_path.stat().st_size, "int8_onnx_bytes": int8_path.stat().st_size,
            "float_state_dict_bytes": sum(t.numel() * t.element_size() for t in module.model.state_dict().values()),
            "checkpoint_bytes": ckpt.stat().st_size,
            "float_baseline": "fp32 ONNX export of the same acoustic model (model.fp32.onnx)"}
    size["ratio"] = size["int8_onnx_bytes"] / size["float_onnx_bytes"]
    return size


def quantize(checkpoint: str | Path, calib: str | Path, data: str | Path, cfg: QuantConfig | None = None,
             out_dir: str | Path | None = None, keep_float: list[str] | None = None, *,
             sensitivity: bool = True, batch_seconds: float = DECODE_BATCH_SECONDS,
             select: str | Path | None = None) -> QuantReport:
    """Quantize ``checkpoint`` to int8, gate it on WER over ``data``; see the module docstring.

    ``select`` (a search passes its dev split): the sensitivity scan, the fallback and the gate run
    on it instead, and ``data`` (the test split) is scored once, by the float model and the chosen
    int8 model, in ``report.extra["held_out"]`` - so nothing is chosen on the split reported.

    Returns the report whether or not the gate passed (``report.accepted``); bad inputs raise
    ``QuantizationError`` / ``DataError``. ``keep_float`` (group names or globs such as
    ``layers.*.attn``) overrides ``cfg.keep_float``. ``sensitivity=False`` skips the scan unless the
    automatic fallback needs it. The artefact is built in a staging sibling of ``out_dir`` and
    swapped in only when the run completes: a failing or interrupted run leaves the previous
    artefact (``ACCEPTED`` included) exactly as it was.
    """
    ckpt = Path(checkpoint)
    if not ckpt.is_file():
        raise QuantizationError(f"{ckpt}: checkpoint not found")
    dest = Path(out_dir) if out_dir is not None else ckpt.parent / f"{ckpt.stem}.int8"
    with staged_dir(dest, owned=art.OWNED, error=QuantizationError) as stage:
        report = _quantize_into(stage, ckpt, calib, data, cfg, keep_float, sensitivity, batch_seconds,
                                select)
        report.out_dir, report.model_path = str(dest), str(dest / Path(str(report.model_path)).name)
        report.write(stage / art.REPORT_FILE)  # with the paths it will have after the swap
    return report


def _quantize_into(out: Path, checkpoint: Path, calib: str | Path, data: str | Path, cfg: QuantConfig | None,
                   keep_float: list[str] | None, sensitivity: bool, batch_seconds: float,
                   select: str | Path | None = None) -> QuantReport:
    start = time.perf_counter()
    cfg = cfg or QuantConfig()
    ckpt = Path(checkpoint)
    if not ckpt.is_file():
        raise QuantizationError(f"{ckpt}: checkpoint not found")
    digest = art.sha256_file(ckpt)
    module = _load_module(ckpt)
    keep = resolve_keep_float(list(cfg.keep_float if keep_float is None else keep_float),
                              expected_groups(module.cfg.model.num_layers))
    if len(keep) == len(expected_groups(module.cfg.model.num_layers)):
        raise QuantizationError("keep_float covers every group: nothing left to quantize")
    threads = cfg.threads or (os.cpu_count() or 1)
    calib_rows = calibration_rows(calib, module, cfg.calib_utterances)
    data_rows = load_rows(data, module, "evaluation")
    batches = feature_batches(module, data_rows, batch_seconds)  # decodes every file: DataError names it
    select_rows = load_rows(select, module, "selection") if select is not None else data_rows
    choose_on = feature_batches(module, select_rows, batch_seconds) if select is not None else batches
    calib_batches = feature_batches(module, calib_rows, per_utterance=True) if cfg.mode == "static" else []
    # ``out`` is a fresh staging folder: no stale ACCEPTED can survive this run

    with tempfile.TemporaryDirectory(prefix="asr_tune_int8_") as tmp:
        work = Path(tmp)
        float_path, export, src, src_model, nodes, groups = _export_graph(module, out, work, cfg.mode)
        kept = {g: "keep_float (requested)" for g in keep}
        float_out, float_stats, export_check = _float_reference(module, choose_on, float_path, export, threads)

        runner = CandidateRunner(src, work, cfg.mode, groups, [n.name for n in nodes if n.group is None],
                                 choose_on, float_out, float_stats, module.tok, cfg.max_wer_delta, threads,
                                 CalibReader(calib_batches) if calib_batches else None, not has_vnni())
        first = runner.candidate(list(kept))
        sens = []
        if sensitivity or (cfg.auto_fallback and not first.gate.passed):
            sens = sensitivity_scan(runner, [g for g in groups if g not in kept])
        final, attempts = first, [first.summary()]
        if cfg.auto_fallback and not first.gate.passed:
            final, kept, attempts = fallback_search(runner, first, kept, sens)

        ref_frames, rows, summary, per_group, group_rows = _coverage(
            module, float_path, src_model, nodes, groups, final.path, kept, cfg.mode, threads)
        accepted, reason = _verdict(final.gate, summary, cfg)
        held_out = _held_out(module, batches, final.path, threads, data) if select is not None else None
        size = _sizes(module, ckpt, float_path, final.path)
        latency = _latency(module, final.path, float_path, latency_batch(module, data_rows, LATENCY_BATCH_UTTS),
                           threads, cfg.latency_repeats)
        model_path = art.write_artifact(out, final.path, module, accepted, {
            "mode": cfg.mode, "source_checkpoint": str(ckpt), "source_sha256": digest,
            "kept_float": kept, "float_wer": float_stats.wer, "int8_wer": final.stats.wer,
            "max_wer_delta": cfg.max_wer_delta, "int8_mac_share": summary["int8_mac_share"]})

    report = QuantReport(
        accepted=accepted, reason=reason, mode=cfg.mode, checkpoint=str(ckpt), checkpoint_sha256=digest,
        out_dir=str(out), model_path=str(model_path), gate=final.gate, float_stats=float_stats.to_dict(),
        int8_stats=final.stats.to_dict(), output_error=final.error, export_check=export_check, size=size,
        latency=latency, macs={**summary, "ref_seconds": MAC_REF_SECONDS, "ref_frames": ref_frames,
                               "per_group": per_group},
        groups=group_rows, kept_float=kept, sensitivity=[s.to_dict() for s in sens], attempts=attempts,
        ops=[r.to_dict() for r in rows],
        data={"calib": str(calib), "calib_utterances": len(calib_rows),
              "calib_used": cfg.mode == "static",  # dynamic ranges need no calibration (still validated)
              "data": str(data),
              "data_utterances": len(data_rows)},
        settings={"threads": threads, "per_channel": True, "reduce_range": runner.reduce_range,
                  "format": "QOperator (QLinearMatMul/QLinearConv)" if cfg.mode == "static"
                  else "IntegerOps (DynamicQuantizeMatMul)", "weights": "int8 symmetric per output channel",
                  "activations": "uint8 asymmetric per tensor", **cfg.model_dump()},
        machine=cpu_info(), wall_s=time.perf_counter() - start)
    if select is not None:
        report.data.update(select=str(select), select_utterances=len(select_rows))
        report.extra["held_out"] = held_out
    report.write(out / art.REPORT_FILE)
    if art.sha256_file(ckpt) != digest:  # defensive: nothing above writes to it
        raise QuantizationError(f"{ckpt}: the float checkpoint changed during quantization")
    return report
