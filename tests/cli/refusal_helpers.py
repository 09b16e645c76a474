"""Shared by tests/cli/test_refusals*.py: run the real CLI on bad input and check how it refuses.

A refusal is: exit status 2, exactly one ``error:`` line that names the file or key, no traceback,
and every output that existed before byte-identical afterwards (``snapshot`` before and after).
"""
from __future__ import annotations

import builtins
import json
import logging
import sys
from pathlib import Path

import pytest
import torch

from asr_tune.cli import main

ROOT = Path(__file__).resolve().parents[2]
FSDD = ROOT.parent / "shared" / "data" / "fsdd"


def refuse(argv: list[str], capsys: pytest.CaptureFixture, *names: str) -> str:
    """Run ``asr-tune argv``; assert a one-line refusal naming every string in ``names``."""
    _rebind_log_streams()
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    errors = [line for line in cap.err.splitlines() if line.startswith("error:")]
    assert code == 2, f"exit {code}\nstdout: {cap.out}\nstderr: {cap.err}"
    assert len(errors) == 1, cap.err
    assert "Traceback" not in cap.err + cap.out, cap.err + cap.out
    for name in names:
        assert str(name) in errors[0], errors[0]
    return errors[0]


def _rebind_log_streams() -> None:
    """Handlers made while an earlier test's capture was active (Lightning's, at import) point at a
    closed stream; point them at this test's stderr, as a fresh process would have them."""
    loggers = [logging.getLogger()] + [v for v in logging.Logger.manager.loggerDict.values()
                                       if isinstance(v, logging.Logger)]
    for lg in loggers:
        for h in lg.handlers:
            if type(h) is logging.StreamHandler and getattr(h.stream, "closed", False):
                h.stream = sys.stderr


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``root``, and the siblings beside it."""
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = p.read_bytes() if p.is_file() else None
    return out


class Payload:
    """Unpickling this calls ``exec``, which creates ``marker``: what a hostile checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def evil_checkpoint(path: Path, marker: Path) -> Path:
    """A file that looks like an asr-tune checkpoint but runs code when loaded with pickle."""
    torch.save({"state_dict": {"w": torch.zeros(1)}, "asr_tune": {"version": 1, "config": Payload(marker)}},
               path)
    return path


def tiny_module(**model):
    from asr_tune.config import load_config
    from asr_tune.data.tokenizer import train_tokenizer
    from asr_tune.model.lightning_module import ASRModule

    over = {"data.sample_rate": 8000, "features.n_mels": 40, "model.d_model": 32, "model.num_layers": 1,
            "model.num_heads": 2, "model.ffn_mult": 2, "model.conv_kernel": 7}
    over.update({f"model.{k}": v for k, v in model.items()})
    cfg = load_config(None, over)
    tok = train_tokenizer(["zero one two three four five six seven eight nine"], cfg.tokenizer)
    return ASRModule(cfg, tok).eval()


def save_checkpoint(module, path: Path, **meta_over) -> Path:
    meta = {"version": 1, "config": module.cfg.to_dict(), "tokenizer": module.tok.state(), **meta_over}
    torch.save({"state_dict": module.state_dict(),
                "asr_tune": {k: v for k, v in meta.items() if v is not None}}, path)
    return path


def fsdd_manifest(path: Path, n: int = 4, **edit) -> Path:
    """``n`` FSDD rows (absolute paths) as a manifest; ``edit`` overrides fields of the first row."""
    src = FSDD / "manifest.jsonl"
    if not src.is_file():
        pytest.skip(f"FSDD not found at {FSDD}")
    rows = [json.loads(line) for line in src.read_text().splitlines()[:n]]
    for r in rows:
        r["audio_filepath"] = str((FSDD / r["audio_filepath"]).resolve())
    rows[0].update(edit)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_train_yaml(tmp_path: Path, out: Path, train: Path | None = None, dev: Path | None = None) -> Path:
    """A one-epoch tiny-model config on FSDD manifests (``train``/``dev`` given, or fresh rows)."""
    train = train or fsdd_manifest(tmp_path / "train.jsonl", n=6)
    dev = dev or fsdd_manifest(tmp_path / "dev.jsonl", n=3)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(f"""data: {{train: {train}, dev: {dev}, test: {dev}, sample_rate: 8000, synth_if_missing: false}}
features: {{n_mels: 40}}
model: {{d_model: 32, num_layers: 1, num_heads: 2, ffn_mult: 2, conv_kernel: 7}}
trainer: {{max_epochs: 1, early_stopping_patience: 0, threads: 1, progress_bar: false, output_dir: {out}}}
""")
    return cfg
