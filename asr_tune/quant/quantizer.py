"""Write one int8 ONNX model with ``onnxruntime.quantization``, excluding chosen nodes.

* ``dynamic``: ``quantize_dynamic`` on the graph whose subsampling convs are im2col MatMuls:
  weights int8 per output channel, activations quantized to uint8 at run time per tensor; ORT fuses
  each MatMul into ``DynamicQuantizeMatMul`` (MLAS int8 GEMM). For the subsampling convs the
  run-time quantization is moved before the im2col copies (``_hoist_im2col_quantization``).
* ``static``: ``quantize_static`` in QOperator format on the Conv graph: ``QLinearMatMul`` /
  ``QLinearConv`` with activation ranges calibrated (MinMax) on the calibration utterances. The
  calibration runs once per pipeline run; the ranges are cached in a JSON file and reused by every
  candidate (sensitivity scan, fallback steps).

Weights use the full int8 range on CPUs with 8-bit dot-product instructions (VNNI); without
them ``reduce_range`` (7-bit weights) avoids int16 saturation in the u8s8 kernels.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from asr_tune.errors import QuantizationError


class _DropOrtAdvice(logging.Filter):
    """Drop ORT's root-logger chatter (per-tensor INFO lines, 'consider pre-processing' advice)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "root" and record.levelno < logging.WARNING:
            return False
        return "pre-process" not in record.getMessage()


@contextmanager
def _quiet_ort() -> Iterator[None]:
    """ORT's quantizer logs on the root logger for every call; keep real warnings only."""
    f = _DropOrtAdvice()
    root = logging.getLogger()
    root.addFilter(f)
    try:
        yield
    finally:
        root.removeFilter(f)


def _hoist_im2col_quantization(graph) -> int:
    """Quantize a subsampling conv's input *before* its im2col Slice/Concat chain, not after.

    ``quantize_dynamic`` puts ``DynamicQuantizeLinear`` on the im2col columns, so the 9x-expanded
    float columns are copied around and then scanned; moving it up to the conv input makes the
    Slice/Concat copies move uint8 (a quarter of the bytes). The per-tensor range then covers the
    whole conv input, a superset of the columns: still a valid dynamic range. Returns how many
    convs were rewired.
    """
    prod = {o: n for n in graph.node for o in n.output}
    moved = 0
    for node in graph.node:
        if node.op_type != "MatMulInteger" or not node.name.startswith("convs."):
            continue
        dql = prod.get(node.input[0])
        concat = prod.get(dql.input[0]) if dql is not None and dql.op_type == "DynamicQuantizeLinear" else None
        if concat is None or concat.op_type != "Concat":
            continue
        roots, slices, stack = set(), [], list(concat.input)
        while stack:
            t = stack.pop()
            p = prod.get(t)
            if p is not None and p.op_type == "Slice":
                slices.append(p)
                stack.append(p.input[0])
            else:
                roots.add(t)
        if len(roots) != 1:
            continue
        x = roots.pop()
        for sl in slices:
            if sl.input[0] == x:
                sl.input[0] = dql.output[0]
        dql.input[0] = x
        node.input[0] = concat.output[0]
        moved += 1
    if moved:  # restore topological order
        ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
        order, pending = [], list(graph.node)
        while pending:
            rest = []
            for n in pending:
                if all(i in ready for i in n.input):
                    order.append(n)
                    ready.update(n.output)
                else:
                    rest.append(n)
            if len(rest) == len(pending):
                raise QuantizationError("int8 graph rewrite left a cycle")
            pending = rest
        del graph.node[:]
        graph.node.extend(order)
    return moved


def _finish(path: Path, mode: str) -> None:
    """Post-process ORT's output: dynamic im2col rewrite; drop the intermediate shape annotations
    the quantizer adds (the fp32 export has none; ORT re-infers them at load), so the two
    serialized sizes compare like for like."""
    import onnx

    model = onnx.load(str(path))
    del model.graph.value_info[:]
    if mode == "dynamic":
        _hoist_im2col_quantization(model.graph)
    onnx.save(model, str(path))


def quantize_model(src: str | Path, dst: str | Path, mode: str, exclude: list[str], include: list[str],
                   calib_reader=None, cache_path: str | Path | None = None, reduce_range: bool = False
                   ) -> Path:
    """Quantize the nodes in ``include`` (never those in ``exclude``) of ``src`` into ``dst``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, \
        quantize_static

    dst = Path(dst)
    if not include:
        raise QuantizationError("nothing to quantize: every group is kept float")
    try:
        with _quiet_ort():
            if mode == "dynamic":
                quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul"], per_channel=True,
                                 reduce_range=reduce_range, weight_type=QuantType.QInt8,
                                 nodes_to_quantize=include, nodes_to_exclude=exclude,
                                 extra_options={"MatMulConstBOnly": True})
            elif mode == "static":
                cache = Path(cache_path) if cache_path else None
                reader = None if cache is not None and cache.is_file() else calib_reader
                if reader is not None and hasattr(reader, "rewind"):
                    reader.rewind()
                quantize_static(str(src), str(dst), reader, quant_format=QuantFormat.QOperator,
                                op_types_to_quantize=["MatMul", "Conv"], per_channel=True,
                                reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, nodes_to_quantize=include,
                                nodes_to_exclude=exclude, calibrate_method=CalibrationMethod.MinMax,
                                extra_options={"MatMulConstBOnly": True},
                                calibration_cache_path=str(cache) if cache else None)
            else:
                raise QuantizationError(f"unknown quantization mode {mode!r} (static|dynamic)")
        _finish(dst, mode)
    except QuantizationError:
        raise
    except Exception as err:  # onnxruntime raises plain exceptions with multi-line text
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise QuantizationError(f"onnxruntime quantization ({mode}) failed: {first}") from None
    return dst
