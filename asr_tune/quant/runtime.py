"""ONNX Runtime sessions, batched inference on cached features, output comparison and latency.

Latency is measured *interleaved*: each repeat runs every contender once on the same batch, in the
same process, with the same thread count, after warm-up; the median of the repeats is reported.
Interleaving keeps a noisy shared machine from favouring whichever model ran last.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from asr_tune.model.decoding import decode_batch


def make_session(path: str | Path, threads: int = 0, optimized_path: str | Path | None = None):
    """CPU ``InferenceSession`` with full graph optimisation (the graph that really runs)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads or (os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@dataclass
class FeatBatch:
    """Log-mel features of one padded batch (computed once in torch float, shared by all models)."""

    feats: np.ndarray  # (B, T, n_mels) float32
    lengths: np.ndarray  # (B,) int64
    texts: list[str]
    seconds: float  # audio seconds in the batch


Outputs = list[tuple[np.ndarray, np.ndarray]]  # per batch: log_probs (B, T', V), out_lens (B,)


def run_onnx(session, batches: list[FeatBatch]) -> Outputs:
    return [tuple(session.run(None, {"feats": b.feats, "lengths": b.lengths})) for b in batches]


@torch.inference_mode()
def run_torch(model: torch.nn.Module, batches: list[FeatBatch]) -> Outputs:
    out = []
    for b in batches:
        lp, ol = model(torch.from_numpy(b.feats), torch.from_numpy(b.lengths))
        out.append((lp.numpy(), ol.numpy()))
    return out


def transcripts(outputs: Outputs, tok) -> list[str]:
    hyps: list[str] = []
    for lp, ol in outputs:
        hyps += decode_batch(torch.from_numpy(lp), torch.from_numpy(ol.astype(np.int64)), tok)
    return hyps


def compare_outputs(ref: Outputs, test: Outputs) -> dict[str, float]:
    """How far ``test`` log-probs are from ``ref`` on valid frames (padding ignored).

    ``rel_l2``: ||lp_test - lp_ref|| / ||lp_ref||; ``kl``: mean per-frame KL(P_ref || P_test) in nats;
    ``argmax_agreement``: share of frames whose best token is the same; ``max_abs``: max |diff|.
    """
    num = den = kl = 0.0
    agree = frames = 0
    max_abs = 0.0
    for (lr, nr), (lt, nt) in zip(ref, test):
        if not np.array_equal(nr, nt):
            raise ValueError("output lengths differ between the models")
        for i, n in enumerate(nr):
            a, b = lr[i, :n].astype(np.float64), lt[i, :n].astype(np.float64)
            num += float(((a - b) ** 2).sum())
            den += float((a ** 2).sum())
            kl += float((np.exp(a) * (a - b)).sum())
            agree += int((a.argmax(-1) == b.argmax(-1)).sum())
            frames += int(n)
            max_abs = max(max_abs, float(np.abs(a - b).max()) if n else 0.0)
    return {"rel_l2": (num / den) ** 0.5 if den else 0.0, "kl": kl / max(frames, 1),
            "argmax_agreement": agree / max(frames, 1), "max_abs": max_abs, "frames": frames}


def interleaved_latency(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 3
                        ) -> dict[str, dict[str, float]]:
    """Median/min/max seconds of each callable, run round-robin ``repeats`` times after warm-up."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "repeats": len(v)}
            for k, v in times.items()}


def cpu_info() -> dict[str, object]:
    """CPU model, core count, ISA flags that matter for int8, library versions."""
    import onnxruntime as ort

    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("unknown", "", "x86_64"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return {"cpu": model, "logical_cores": os.cpu_count(), "isa": isa, "machine": platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__,
            "onnxruntime": ort.__version__, "numpy": np.__version__}


def has_vnni() -> bool:
    """Whether the CPU has 8-bit dot-product instructions (then weights need no 7-bit range)."""
    isa = cpu_info()["isa"]
    return any(f in isa for f in ("avx512_vnni", "avx_vnni", "amx_int8")) or platform.machine() in (
        "aarch64", "arm64")
