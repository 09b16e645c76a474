"""The int8 artefact: a folder that ``asr-tune evaluate`` can load like a float checkpoint.

Layout (written by ``asr_tune.quant.pipeline.quantize``)::

    <out>/meta.json                  format "asr-tune-int8" v1, accepted flag, embedded experiment
                                     config + tokenizer state, source checkpoint sha256, model sha256
    <out>/model.int8.onnx            the int8 acoustic model (only when the WER gate passed)
    <out>/model.int8.rejected.onnx   the int8 model of a run whose gate failed (never loaded by default)
    <out>/model.fp32.onnx            the float export it was made from (size / latency baseline)
    <out>/report.json                the full QuantReport
    <out>/ACCEPTED                   marker, present only when the gate passed

The ONNX model maps log-mel ``feats (B, T, n_mels)`` + ``lengths (B,)`` to CTC log-probs; features
are computed by the checkpoint's own ``LogMel`` in torch float, exactly as in the float model.

Usage::

    from asr_tune.quant.artifact import is_quantized_artifact, load_quantized
    if is_quantized_artifact("runs/x/int8"):
        model = load_quantized("runs/x/int8")          # refuses a model that failed the gate
        texts = model.transcribe(wav, wav_lens)
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr_tune.config import config_from_dict
from asr_tune.errors import QuantizationError
from asr_tune.model.decoding import decode_batch
from asr_tune.data.features import LogMel
from asr_tune.data.tokenizer import tokenizer_from_state

FORMAT = "asr-tune-int8"
VERSION = 1
META_FILE = "meta.json"
MODEL_FILE = "model.int8.onnx"
REJECTED_FILE = "model.int8.rejected.onnx"
FLOAT_FILE = "model.fp32.onnx"
REPORT_FILE = "report.json"
MARKER_FILE = "ACCEPTED"
OWNED = (META_FILE, MODEL_FILE, REJECTED_FILE, FLOAT_FILE, REPORT_FILE, MARKER_FILE)
_OWNED = OWNED


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def clear_artifact(out_dir: Path) -> None:
    """Remove the files a previous run wrote here (a stale ACCEPTED must never survive a rerun)."""
    for name in _OWNED:
        (out_dir / name).unlink(missing_ok=True)


def write_artifact(out_dir: Path, int8_model: Path, module: Any, accepted: bool, meta_extra: dict) -> Path:
    """Copy the int8 model in under its accepted/rejected name and write ``meta.json`` (+ marker)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER_FILE).unlink(missing_ok=True)
    dest = out_dir / (MODEL_FILE if accepted else REJECTED_FILE)
    shutil.copyfile(int8_model, dest)
    digest = sha256_file(dest)
    meta = {"format": FORMAT, "version": VERSION, "accepted": accepted, "model_file": dest.name,
            "model_sha256": digest, "float_file": FLOAT_FILE, "inputs": ["feats", "lengths"],
            "outputs": ["log_probs", "out_lens"], "config": module.cfg.to_dict(),
            "tokenizer": module.tok.state(), **meta_extra}
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    if accepted:
        (out_dir / MARKER_FILE).write_text(f"{dest.name} sha256 {digest}\n")
    return dest


def _folder(path: str | Path) -> Path:
    p = Path(path)
    return p.parent if p.is_file() else p


def _read_meta(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def is_quantized_artifact(path: str | Path) -> bool:
    """True for an int8 artefact folder, or its ``meta.json`` / ONNX file (accepted or not)."""
    p = Path(path)
    if p.is_file() and p.suffix not in (".json", ".onnx"):
        return False
    return p.exists() and _read_meta(_folder(p)) is not None


class QuantizedASR:
    """int8 ONNX acoustic model + float log-mel front end, with ``ASRModule``'s inference API."""

    def __init__(self, folder: Path, meta: dict, session: Any) -> None:
        self.path, self.meta, self.session = folder, meta, session
        self.cfg = config_from_dict(meta["config"], f"{folder / META_FILE} (embedded config)")
        self.tok = tokenizer_from_state(meta["tokenizer"])
        self.features = LogMel(self.cfg.features, self.cfg.data.sample_rate).eval()
        self.accepted = bool(meta.get("accepted"))

    # ASRModule compatibility: evaluation code calls .to(device).eval() on whatever it loaded
    def to(self, *args: Any, **kwargs: Any) -> "QuantizedASR":
        return self

    def eval(self) -> "QuantizedASR":
        return self

    @torch.inference_mode()
    def __call__(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, flen = self.features(wav.detach().cpu().float(), wav_lens.detach().cpu())
        lp, ol = self.session.run(None, {"feats": feats.numpy().astype(np.float32),
                                         "lengths": flen.numpy().astype(np.int64)})
        return torch.from_numpy(lp), torch.from_numpy(ol)

    forward = __call__

    def transcribe(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> list[str]:
        log_probs, out_len = self(wav, wav_lens)
        return decode_batch(log_probs, out_len, self.tok)


def load_quantized(path: str | Path, threads: int = 0, require_accepted: bool = True) -> QuantizedASR:
    """Load an int8 artefact folder (or its meta.json / ONNX file) for inference on CPU.

    A model whose WER gate failed is refused unless ``require_accepted=False``.
    """
    from asr_tune.quant.runtime import make_session

    folder = _folder(path)
    meta = _read_meta(folder)
    if meta is None:
        raise QuantizationError(f"{path}: not an asr-tune int8 artefact (no {META_FILE} with format {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise QuantizationError(f"{folder}: int8 artefact format version {meta.get('version')}, expected {VERSION}")
    accepted = bool(meta.get("accepted")) and (folder / MARKER_FILE).is_file()
    if require_accepted and not accepted:
        raise QuantizationError(f"{folder}: the int8 model was not accepted by the WER gate "
                                f"(see {folder / REPORT_FILE}); load_quantized(..., require_accepted=False) "
                                "loads it anyway")
    model = folder / meta.get("model_file", MODEL_FILE)
    if not model.is_file():
        raise QuantizationError(f"{model}: int8 model file missing")
    if meta.get("model_sha256") and sha256_file(model) != meta["model_sha256"]:
        raise QuantizationError(f"{model}: checksum does not match {META_FILE} (file modified or truncated)")
    try:
        session = make_session(model, threads)
    except Exception as err:
        raise QuantizationError(f"{model}: onnxruntime cannot load it ({str(err).splitlines()[0]})") from None
    return QuantizedASR(folder, meta, session)
