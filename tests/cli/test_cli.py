"""The CLI: one-line errors with exit status 2, train -> evaluate on real files, --help everywhere."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from asr_tune.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def test_every_subcommand_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    expected = {"train", "evaluate", "corpus", "search", "resume", "quantize", "submit", "status", "logs",
                "stop", "jobs", "report"}
    assert expected <= set(sub.choices)


def test_unknown_config_key_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model:\n  num_layer: 3\n")
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {cfg}: unknown key 'model.num_layer'"


def test_missing_manifest_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["train", str(ROOT / "configs" / "synth_tiny.yaml"), "--set", "data.synth_if_missing=false",
                 "--set", f"data.train={tmp_path}/nope.jsonl"])
    assert code == 2
    assert f"{tmp_path}/nope.jsonl: no such manifest or folder" in capsys.readouterr().err


def test_train_then_evaluate_writes_wer_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from asr_tune.data.synth import build_synth_corpus

    build_synth_corpus(tmp_path / "c", n_utterances=30, progress=False)
    out = tmp_path / "run"
    code = main(["train", str(ROOT / "configs" / "ci_search_tiny.yaml"), "--set", f"trainer.output_dir={out}",
                 "--set", "trainer.max_epochs=1", *[f"--set=data.{s}={tmp_path}/c/{s}.jsonl"
                                                    for s in ("train", "dev", "test")]])
    assert code == 0
    printed = capsys.readouterr().out
    assert "test WER" in printed and "best checkpoint" in printed
    ckpt = out / "checkpoints" / "best.ckpt"
    assert ckpt.is_file()
    assert main(["evaluate", str(ckpt), "--data", str(tmp_path / "c" / "test.jsonl"),
                 "--out", str(tmp_path / "wer.json")]) == 0
    report = json.loads((tmp_path / "wer.json").read_text())
    assert set(report) >= {"wer", "substitutions", "deletions", "insertions", "n_words", "n_utts"}
    assert report["n_utts"] == sum(1 for _ in open(tmp_path / "c" / "test.jsonl"))


def test_evaluate_rejects_a_non_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fake = tmp_path / "x.ckpt"
    fake.write_bytes(b"garbage")
    assert main(["evaluate", str(fake), "--data", str(tmp_path)]) == 2
    assert "x.ckpt: not a readable checkpoint" in capsys.readouterr().err


def test_python_dash_m_entry_point() -> None:
    out = subprocess.run([sys.executable, "-m", "asr_tune", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "search" in out.stdout
