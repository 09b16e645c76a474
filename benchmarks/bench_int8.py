"""Float vs int8 (ONNX Runtime, CPU): WER delta, size ratio, latency ratio, real-time factor.

Usage::

    python benchmarks/bench_int8.py --checkpoint runs/train/checkpoints/best.ckpt \\
        --calib data/synth/dev.jsonl --data data/synth/test.jsonl
    python benchmarks/bench_int8.py --quick --checkpoint A.ckpt B.ckpt --calib dev.jsonl --data test.jsonl
    python benchmarks/bench_int8.py --help

Runs the WER-gated int8 stage (``asr_tune.quant.pipeline.quantize``) for every checkpoint and mode
(dynamic and static by default), then a latency sweep of the float and int8 ONNX models over a few
batch shapes (same process, same threads, interleaved, median of repeats). Writes
``<out>/bench_int8.json`` and ``<out>/bench_int8.png`` (default ``results/int8/``) with machine info
(CPU model, cores, ISA, torch / onnxruntime versions), and the per-run artefacts under
``<out>/runs/``. Targets: size <= 0.3x, latency <= 0.6x, WER delta <= +0.3 points; every miss is
printed with the measured value. ``--quick`` uses at most 48 evaluation and 16 calibration
utterances, 5 latency repeats and no sensitivity scan.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

TARGETS = {"size_ratio": 0.3, "latency_ratio": 0.6, "wer_delta": 0.3}
SWEEP = [(1, 100), (1, 500), (1, 1500), (8, 300)]  # (batch, feature frames at 10 ms hop)


def _subset(src: str, n: int, dest: Path) -> str:
    from asr_tune.data.manifest import load_corpus, write_manifest

    rows = load_corpus(src)
    if len(rows) <= n:
        return src
    step = len(rows) / n
    return str(write_manifest(dest, [rows[int(i * step)] for i in range(n)], relative=False))


def _sweep(out_dir: Path, n_mels: int, threads: int, repeats: int) -> list[dict]:
    """Float vs int8 ONNX latency on synthetic normalised features of a few shapes."""
    import numpy as np

    from asr_tune.quant.runtime import interleaved_latency, make_session

    float_s = make_session(out_dir / "model.fp32.onnx", threads)
    int8_path = out_dir / "model.int8.onnx"
    int8_s = make_session(int8_path if int8_path.is_file() else out_dir / "model.int8.rejected.onnx", threads)
    rows = []
    for b, t in SWEEP:
        feeds = {"feats": np.random.default_rng(0).standard_normal((b, t, n_mels)).astype(np.float32),
                 "lengths": np.full((b,), t, dtype=np.int64)}
        lat = interleaved_latency({"float": lambda: float_s.run(None, feeds),
                                   "int8": lambda: int8_s.run(None, feeds)}, repeats)
        f, q = lat["float"]["median_s"], lat["int8"]["median_s"]
        rows.append({"batch": b, "frames": t, "float_ms": 1e3 * f, "int8_ms": 1e3 * q, "ratio": q / f,
                     "ratio_min": lat["int8"]["min_s"] / lat["float"]["min_s"]})
    return rows


def _misses(row: dict) -> list[str]:
    out = []
    if row["size_ratio"] > TARGETS["size_ratio"]:
        out.append(f"size {row['size_ratio']:.3f}x > {TARGETS['size_ratio']}x")
    if row["latency_ratio"] > TARGETS["latency_ratio"]:
        out.append(f"latency {row['latency_ratio']:.3f}x > {TARGETS['latency_ratio']}x")
    if row["wer_delta"] > TARGETS["wer_delta"]:
        out.append(f"WER delta {row['wer_delta']:+.2f} > +{TARGETS['wer_delta']}")
    return out


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['name']}\n{r['mode']}" for r in rows]
    x = range(len(rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(4 + 2.2 * len(rows), 4))
    w = 0.38
    ax1.bar([i - w / 2 for i in x], [r["size_ratio"] for r in rows], w, label="size int8/float")
    ax1.bar([i + w / 2 for i in x], [r["latency_ratio"] for r in rows], w, label="latency int8/float")
    ax1.axhline(TARGETS["size_ratio"], color="C0", ls="--", lw=1, label="size target")
    ax1.axhline(TARGETS["latency_ratio"], color="C1", ls="--", lw=1, label="latency target")
    ax1.set_xticks(list(x), labels)
    ax1.set_ylabel("ratio (lower is better)")
    ax1.legend(fontsize=7)
    bars = ax2.bar(list(x), [r["wer_delta"] for r in rows], color=["C2" if r["accepted"] else "C3" for r in rows])
    ax2.bar_label(bars, labels=[f"{r['wer_delta']:+.2f}\n{100 * r['int8_mac_share']:.0f}% MACs int8" for r in rows],
                  fontsize=7)
    ax2.axhline(TARGETS["wer_delta"], color="k", ls="--", lw=1, label="gate")
    ax2.set_xticks(list(x), labels)
    ax2.set_ylabel("WER delta (abs. points)")
    ax2.legend(fontsize=7)
    fig.suptitle("int8 (ONNX Runtime CPU) vs float")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--checkpoint", nargs="+", required=True, help="float asr-tune checkpoint(s)")
    p.add_argument("--calib", required=True, help="calibration manifest")
    p.add_argument("--data", required=True, help="evaluation manifest (WER gate)")
    p.add_argument("--mode", nargs="+", choices=["dynamic", "static"], default=["dynamic", "static"])
    p.add_argument("--out", default="results/int8")
    p.add_argument("--threads", type=int, default=1,
                   help="threads for every model (default 1: stable on a shared machine; 0 = all cores)")
    p.add_argument("--repeats", type=int, default=20, help="latency repeats (median)")
    p.add_argument("--max-wer-delta", type=float, default=TARGETS["wer_delta"])
    p.add_argument("--quick", action="store_true", help="small subsets, few repeats, no sensitivity scan")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from asr_tune.config import QuantConfig
    from asr_tune.errors import AsrTuneError
    from asr_tune.quant.pipeline import quantize
    from asr_tune.quant.runtime import cpu_info

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    calib, data, repeats = args.calib, args.data, args.repeats
    if args.quick:
        calib = _subset(calib, 16, out / "quick_calib.jsonl")
        data = _subset(data, 48, out / "quick_data.jsonl")
        repeats = min(repeats, 5)
    rows, reports = [], []
    for ckpt in args.checkpoint:
        name = Path(ckpt).parent.parent.name if Path(ckpt).parent.name == "checkpoints" else Path(ckpt).stem
        for mode in args.mode:
            cfg = QuantConfig(mode=mode, max_wer_delta=args.max_wer_delta, latency_repeats=repeats,
                              threads=args.threads, calib_utterances=16 if args.quick else 64)
            try:
                rep = quantize(ckpt, calib=calib, data=data, cfg=cfg, out_dir=out / "runs" / name / mode,
                               sensitivity=not args.quick)
            except AsrTuneError as err:
                print(f"error: {ckpt} ({mode}): {err}", file=sys.stderr)
                return 2
            d = rep.to_dict()
            lat = d["latency"]
            row = {"name": name, "mode": mode, "checkpoint": str(ckpt), "accepted": d["accepted"],
                   "float_wer": d["float_wer"], "int8_wer": d["int8_wer"], "wer_delta": d["wer_delta"],
                   "size_ratio": d["size"]["ratio"], "float_onnx_bytes": d["size"]["float_onnx_bytes"],
                   "int8_onnx_bytes": d["size"]["int8_onnx_bytes"], "latency_ratio": lat["ratio"],
                   "latency_ratio_min": lat["ratio_min"], "load_avg_1m": lat["load_avg_1m"],
                   "latency_ratio_vs_torch": lat["ratio_vs_torch"],
                   "float_ms": 1e3 * lat["float_onnx"]["median_s"], "int8_ms": 1e3 * lat["int8_onnx"]["median_s"],
                   "torch_ms": 1e3 * lat["float_torch"]["median_s"], "rtf_float": lat["rtf"]["float_onnx"],
                   "rtf_int8": lat["rtf"]["int8_onnx"], "int8_mac_share": d["int8_mac_share"],
                   "kept_float": list(d["kept_float"]), "report": f"{d['out_dir']}/report.json",
                   "sweep": _sweep(Path(d["out_dir"]), _n_mels(d), cfg.threads, repeats)}
            row["missed"] = _misses(row)
            rows.append(row)
            reports.append(d)
            print(rep.table(), "\n")
    machine = cpu_info()
    result = {"machine": machine, "targets": TARGETS, "quick": args.quick, "calib": calib, "data": data,
              "rows": rows}
    (out / "bench_int8.json").write_text(json.dumps(result, indent=2))
    _plot(rows, out / "bench_int8.png")
    print(f"{machine['cpu']} ({machine['logical_cores']} logical cores, {', '.join(machine['isa'])}); "
          f"torch {machine['torch']}, onnxruntime {machine['onnxruntime']}")
    hdr = (f"{'model':14}{'mode':9}{'WER f/i8':>15}{'ΔWER':>7}{'size':>7}{'lat':>7}{'best':>7}{'RTF f/i8':>17}"
           f"{'int8 MACs':>10}")
    print(hdr)
    for r in rows:
        print(f"{r['name'][:13]:14}{r['mode']:9}{r['float_wer']:>7.2f}/{r['int8_wer']:<7.2f}"
              f"{r['wer_delta']:>+7.2f}{r['size_ratio']:>7.3f}{r['latency_ratio']:>7.3f}"
              f"{r['latency_ratio_min']:>7.3f}{r['rtf_float']:>8.4f}/{r['rtf_int8']:<8.4f}"
              f"{100 * r['int8_mac_share']:>9.1f}%")
        for s in r["sweep"]:
            print(f"{'':23}sweep B={s['batch']} T={s['frames']}: {s['float_ms']:.2f} -> {s['int8_ms']:.2f} ms "
                  f"({s['ratio']:.2f}x median, {s['ratio_min']:.2f}x best)")
        for m in r["missed"]:
            print(f"{'':23}MISSED target: {m}")
    print(f"wrote {out / 'bench_int8.json'} and {out / 'bench_int8.png'}")
    return 0


def _n_mels(report: dict) -> int:
    meta = json.loads((Path(report["out_dir"]) / "meta.json").read_text())
    return int(meta["config"]["features"]["n_mels"])


if __name__ == "__main__":
    raise SystemExit(main())
