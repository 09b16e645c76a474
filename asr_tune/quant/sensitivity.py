"""Per-group sensitivity and the automatic float fallback.

A *candidate* is the int8 model with a given set of groups kept float. ``CandidateRunner`` builds
and scores candidates on the cached evaluation features: WER against the references, and the
distance of its log-probs from the float model's (``compare_outputs``).

* ``sensitivity_scan``: quantize one group at a time (everything else float) and measure the WER
  change and the KL divergence from the float posteriors.
* ``fallback_search``: starting from "everything int8 except keep_float", keep the most sensitive
  remaining group float (largest one-at-a-time WER increase, then largest KL) until the gate passes.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from asr_tune.model.decoding import WERStats, wer_stats
from asr_tune.quant.quantizer import quantize_model
from asr_tune.quant.report import GateResult, wer_gate
from asr_tune.quant.runtime import FeatBatch, Outputs, compare_outputs, make_session, run_onnx, transcripts

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    kept: list[str]
    path: Path
    stats: WERStats
    error: dict
    gate: GateResult

    def summary(self) -> dict:
        return {"kept_float": list(self.kept), "int8_wer": self.stats.wer, "delta": self.gate.delta,
                "passed": self.gate.passed, "kl": self.error["kl"], "rel_l2": self.error["rel_l2"]}


@dataclass
class CandidateRunner:
    src: Path  # the fp32 graph that gets quantized
    work: Path
    mode: str
    groups: dict[str, list[str]]
    never: list[str]  # compute nodes that are never quantized (attention scores, depthwise conv)
    batches: list[FeatBatch]
    float_out: Outputs
    float_stats: WERStats
    tok: object
    max_wer_delta: float
    threads: int
    calib_reader: object = None
    reduce_range: bool = False
    _n: int = field(default=0, init=False)

    def candidate(self, kept: list[str] | set[str]) -> Candidate:
        kept = [g for g in self.groups if g in set(kept)]
        include = [n for g, nodes in self.groups.items() if g not in kept for n in nodes]
        exclude = self.never + [n for g in kept for n in self.groups[g]]
        self._n += 1
        path = self.work / f"candidate{self._n}.int8.onnx"
        quantize_model(self.src, path, self.mode, exclude, include, self.calib_reader,
                       self.work / "calibration_ranges.json", self.reduce_range)
        out = run_onnx(make_session(path, self.threads), self.batches)
        stats = wer_stats([t for b in self.batches for t in b.texts], transcripts(out, self.tok))
        return Candidate(kept, path, stats, compare_outputs(self.float_out, out),
                         wer_gate(self.float_stats, stats, self.max_wer_delta))


@dataclass
class Sensitivity:
    group: str
    wer: float
    wer_delta: float
    kl: float
    rel_l2: float
    argmax_agreement: float
    rank: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def sensitivity_scan(runner: CandidateRunner, groups: list[str]) -> list[Sensitivity]:
    """One candidate per group with only that group in int8; ranked most sensitive first."""
    out = []
    for g in groups:
        c = runner.candidate([h for h in runner.groups if h != g])
        out.append(Sensitivity(g, c.stats.wer, c.gate.delta, c.error["kl"], c.error["rel_l2"],
                               c.error["argmax_agreement"]))
        c.path.unlink(missing_ok=True)
        log.info("sensitivity %-18s ΔWER %+.2f  KL %.2e", g, c.gate.delta, c.error["kl"])
    out.sort(key=lambda s: (-s.wer_delta, -s.kl))
    for i, s in enumerate(out, 1):
        s.rank = i
    return out


def fallback_search(runner: CandidateRunner, first: Candidate, kept: dict[str, str],
                    sens: list[Sensitivity]) -> tuple[Candidate, dict[str, str], list[dict]]:
    """Keep the most sensitive groups float, one more per step, until the gate passes."""
    attempts = [first.summary()]
    cand = first
    order = [s for s in sens if s.group not in kept]
    kept = dict(kept)
    while not cand.gate.passed and order:
        s = order.pop(0)
        if len(kept) + 1 >= len(runner.groups):
            attempts.append({"kept_float": list(kept) + [s.group],
                             "stopped": "keeping it float too would leave no group in int8"})
            break
        kept[s.group] = (f"auto fallback step {len(attempts)}: most sensitive remaining group (alone in int8: "
                         f"ΔWER {s.wer_delta:+.2f} pts, KL {s.kl:.2e})")
        cand = runner.candidate(list(kept))
        attempts.append(cand.summary())
    return cand, kept, attempts
