"""``asr-tune quantize``: the WER-gated int8 stage on the command line.

Usage::

    asr-tune quantize runs/train/checkpoints/best.ckpt --calib data/synth/dev.jsonl \\
        --data data/synth/test.jsonl [--mode static|dynamic] [--max-wer-delta 0.3] \\
        [--keep-float ctc_head 'layers.*.attn'] [--calib-utterances 64] [--no-auto-fallback] \\
        [--skip-sensitivity] [--threads N] [--out runs/train/int8]
    asr-tune evaluate runs/train/int8 --data data/synth/test.jsonl   # the accepted int8 artefact

Exit status: 0 when the int8 model is accepted. When the WER gate fails the table and
``report.json`` are still written, then ``GateFailed`` is raised: the main CLI prints one
``error:`` line and exits 2, like every other user-facing failure (bad checkpoint, too few
calibration utterances, bad audio).
"""
from __future__ import annotations

import argparse

from asr_tune.errors import GateFailed


def _cmd_quantize(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from asr_tune.config import QuantConfig
    from asr_tune.errors import QuantizationError
    from asr_tune.quant.pipeline import quantize

    fields = {"mode": args.mode, "max_wer_delta": args.max_wer_delta, "calib_utterances": args.calib_utterances,
              "auto_fallback": args.auto_fallback, "latency_repeats": args.latency_repeats,
              "threads": args.threads, "keep_float": args.keep_float or []}
    try:
        cfg = QuantConfig(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as err:  # keep it to one line, naming the option
        e = err.errors()[0]
        opt = "--" + str(e["loc"][0]).replace("_", "-") if e["loc"] else "option"
        raise QuantizationError(f"quantize {opt}: {e['msg']} (got {e.get('input')!r})") from None
    report = quantize(args.checkpoint, calib=args.calib, data=args.data, cfg=cfg, out_dir=args.out,
                      sensitivity=not args.skip_sensitivity)
    print(report.table())
    print(f"report: {report.out_dir}/report.json")
    if not report.accepted:
        raise GateFailed(f"int8 model rejected: {report.reason} (not marked accepted; see "
                         f"{report.out_dir}/report.json)")
    print(f"accepted int8 model: {report.model_path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    q = subparsers.add_parser("quantize", help="post-training int8 quantization, gated on WER",
                              description="Post-training int8 quantization (ONNX Runtime), gated on WER.")
    q.add_argument("checkpoint", help="float asr-tune checkpoint (.ckpt); never modified")
    q.add_argument("--calib", required=True, help="manifest whose utterances calibrate activation ranges")
    q.add_argument("--data", required=True, help="manifest scored by both models for the WER gate")
    q.add_argument("--mode", choices=["static", "dynamic"], default=None,
                   help="static: calibrated activation ranges (the default); dynamic: ranges at run time")
    q.add_argument("--max-wer-delta", type=float, default=None,
                   help="allowed WER increase in absolute WER points (default 0.3)")
    q.add_argument("--keep-float", nargs="+", metavar="GROUP", default=None,
                   help="groups to keep float, e.g. ctc_head 'layers.*.attn' subsampling.conv")
    q.add_argument("--calib-utterances", type=int, default=None, help="at most this many (default 64)")
    q.add_argument("--no-auto-fallback", dest="auto_fallback", action="store_false", default=None,
                   help="do not keep sensitive groups float automatically when the gate fails")
    q.add_argument("--skip-sensitivity", action="store_true",
                   help="skip the one-group-at-a-time scan unless the fallback needs it")
    q.add_argument("--latency-repeats", type=int, default=None)
    q.add_argument("--threads", type=int, default=None, help="threads for inference/latency (0 = all cores)")
    q.add_argument("--out", default=None, help="artefact folder (default: <checkpoint stem>.int8 beside it)")
    q.set_defaults(func=_cmd_quantize)
