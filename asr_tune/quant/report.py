"""The WER gate and the int8 stage's report (JSON + a short printed table).

The gate compares float and int8 WER on the *same* utterances: ``delta = int8_wer - float_wer`` in
absolute WER points (percent), and passes when ``delta <= max_wer_delta``. A model is accepted
only when the gate passes *and* some MACs really run in int8.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from asr_tune.errors import QuantizationError
from asr_tune.model.decoding import WERStats

_EPS = 1e-9


@dataclass
class GateResult:
    float_wer: float
    int8_wer: float
    delta: float  # absolute WER points
    max_wer_delta: float
    passed: bool
    n_utts: int
    n_words: int

    def to_dict(self) -> dict:
        return asdict(self)


def wer_gate(float_stats: WERStats, int8_stats: WERStats, max_wer_delta: float) -> GateResult:
    """Pass/fail of int8 against float on the same utterances (``max_wer_delta`` in WER points)."""
    if max_wer_delta < 0:
        raise QuantizationError(f"max_wer_delta must be >= 0 absolute WER points, got {max_wer_delta}")
    if (float_stats.n_utts, float_stats.n_words) != (int8_stats.n_utts, int8_stats.n_words):
        raise QuantizationError("WER gate: float and int8 were scored on different utterances "
                                f"({float_stats.n_utts} vs {int8_stats.n_utts})")
    delta = int8_stats.wer - float_stats.wer
    return GateResult(float_stats.wer, int8_stats.wer, delta, max_wer_delta,
                      delta <= max_wer_delta + _EPS, float_stats.n_utts, float_stats.n_words)


@dataclass
class QuantReport:
    """Everything the int8 stage measured; ``to_dict()`` is what ``report.json`` holds."""

    accepted: bool
    reason: str
    mode: str
    checkpoint: str
    checkpoint_sha256: str
    out_dir: str | None
    model_path: str | None
    gate: GateResult
    float_stats: dict
    int8_stats: dict
    output_error: dict
    export_check: dict
    size: dict
    latency: dict
    macs: dict
    groups: list[dict]
    kept_float: dict[str, str]
    sensitivity: list[dict]
    attempts: list[dict]
    ops: list[dict]
    data: dict
    settings: dict
    machine: dict
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def float_wer(self) -> float:
        return self.gate.float_wer

    @property
    def int8_wer(self) -> float:
        return self.gate.int8_wer

    @property
    def wer_delta(self) -> float:
        return self.gate.delta

    @property
    def int8_mac_share(self) -> float:
        return float(self.macs.get("int8_mac_share", 0.0))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(float_wer=self.float_wer, int8_wer=self.int8_wer, wer_delta=self.wer_delta,
                 int8_mac_share=self.int8_mac_share)
        return d

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def table(self) -> str:
        return format_table(self.to_dict())


def _ms(lat: dict, key: str, stat: str = "median_s") -> str:
    v = lat.get(key, {}).get(stat)
    return "-" if v is None else f"{1000 * v:.1f} ms"


def format_table(d: dict[str, Any]) -> str:
    """A short human summary of a report dict (also used by the benchmark)."""
    g, s, lat = d["gate"], d["size"], d["latency"]
    rtf = lat.get("rtf", {})
    verdict = "ACCEPTED" if d["accepted"] else "REJECTED"
    lines = [
        f"int8 ({d['mode']}) {verdict}: {d['reason']}",
        f"{'':22}{'float':>14}{'int8':>14}{'int8/float':>12}",
        f"{'WER % (' + str(g['n_utts']) + ' utts)':22}{g['float_wer']:>14.2f}{g['int8_wer']:>14.2f}"
        f"{'Δ ' + format(g['delta'], '+.2f') + ' pts':>12}",
        f"{'size (ONNX bytes)':22}{s['float_onnx_bytes']:>14,}{s['int8_onnx_bytes']:>14,}{s['ratio']:>12.3f}",
        f"{'latency (ORT, median)':22}{_ms(lat, 'float_onnx'):>14}{_ms(lat, 'int8_onnx'):>14}"
        f"{lat.get('ratio', float('nan')):>12.3f}",
        f"{'latency (ORT, best)':22}{_ms(lat, 'float_onnx', 'min_s'):>14}{_ms(lat, 'int8_onnx', 'min_s'):>14}"
        f"{lat.get('ratio_min', float('nan')):>12.3f}",
        f"{'latency (torch fp32)':22}{_ms(lat, 'float_torch'):>14}{'':>14}"
        f"{lat.get('ratio_vs_torch', float('nan')):>12.3f}",
        f"{'RTF':22}{rtf.get('float_onnx', float('nan')):>14.4f}{rtf.get('int8_onnx', float('nan')):>14.4f}",
        f"gate: Δ {g['delta']:+.2f} vs allowed +{g['max_wer_delta']:.2f} WER points: "
        f"{'pass' if g['passed'] else 'FAIL'}; "
        f"int8 MAC share {100 * d['macs']['int8_mac_share']:.1f}% "
        f"(ref {d['macs']['ref_seconds']:.1f} s utterance)",
        f"latency: batch of {lat.get('batch_utterances')} utterances ({lat.get('batch_audio_s', 0):.1f} s audio), "
        f"{lat.get('threads')} thread(s), median of {lat.get('float_onnx', {}).get('repeats')} interleaved runs; "
        f"1-min load average {lat.get('load_avg_1m') or 0:.1f}",
    ]
    if d["kept_float"]:
        lines.append("kept float: " + "; ".join(f"{k} ({v})" for k, v in d["kept_float"].items()))
    return "\n".join(lines)
