"""Refusals, outputs: a failing or interrupted command leaves what was there before byte-identical
(quantize --out, corpus synth|digits --out, train into an existing output_dir), and output paths
that cannot be written are refused before the work.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from refusal_helpers import FSDD, fsdd_manifest, refuse, save_checkpoint, snapshot, tiny_module, tiny_train_yaml

from asr_tune.cli import main
from asr_tune.errors import DataError


def _previous_output(folder: Path, names: tuple[str, ...]) -> dict:
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_text(f"previous {name}\n")
    (folder / "notes.txt").write_text("the user's own file\n")
    return snapshot(folder)


def _no_staging_left(folder: Path) -> None:
    assert [p.name for p in folder.parent.iterdir() if ".staging-" in p.name] == []


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_quantize_interrupted_or_failing_keeps_the_accepted_artefact(tmp_path: Path, capsys, monkeypatch) -> None:
    import asr_tune.quant.pipeline as pipeline

    ckpt = save_checkpoint(tiny_module(), tmp_path / "model.ckpt")
    out = tmp_path / "int8"
    before = _previous_output(out, ("ACCEPTED", "model.int8.onnx", "meta.json", "report.json"))
    good = fsdd_manifest(tmp_path / "good.jsonl")
    argv = ["quantize", ckpt, "--calib", good, "--data", good, "--out", out, "--skip-sensitivity"]
    monkeypatch.setattr(pipeline, "_float_reference", _interrupt)  # Ctrl-C after the ONNX export was written
    assert main([str(a) for a in argv]) == 130
    assert snapshot(out) == before
    _no_staging_left(out)
    monkeypatch.undo()
    truncated = tmp_path / "cut.flac"  # a failing run: bad audio in the scored manifest
    truncated.write_bytes((FSDD / "audio" / "0_george_0.flac").read_bytes()[:200])
    bad = fsdd_manifest(tmp_path / "bad.jsonl", audio_filepath=str(truncated))
    refuse(["quantize", ckpt, "--calib", good, "--data", bad, "--out", out], capsys, str(truncated))
    assert snapshot(out) == before
    _no_staging_left(out)


@pytest.mark.parametrize("corpus", ["digits", "synth"])
def test_a_failing_corpus_rebuild_keeps_the_previous_corpus(tmp_path: Path, capsys, monkeypatch, corpus) -> None:
    import asr_tune.data.digits as digits
    import asr_tune.data.synth as synth

    out = tmp_path / "corpus"
    before = _previous_output(out, ("train.jsonl", "dev.jsonl", "test.jsonl", "corpus.json"))

    def fail(*args, **kwargs):
        raise DataError(f"{args[0] if args else 'x'}: simulated failure half-way through the build")

    if corpus == "digits":
        monkeypatch.setattr(digits, "write_flac", fail)
        argv = ["corpus", "digits", "--src", FSDD, "--out", out, "--n-train", 4, "--n-dev", 2, "--n-test", 2]
    else:
        monkeypatch.setattr(synth, "_write_manifests", fail)
        monkeypatch.setattr(synth, "_n_workers", lambda n: 1)
        argv = ["corpus", "synth", "--out", out, "--utterances", 3]
    refuse(argv, capsys, "simulated failure")
    assert snapshot(out) == before
    _no_staging_left(out)


def test_a_failing_train_keeps_the_previous_run(tmp_path: Path, capsys, monkeypatch) -> None:
    from asr_tune.model.lightning_module import ASRModule

    out = tmp_path / "run"
    before = _previous_output(out, ("config.yaml", "result.json"))
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "best.ckpt").write_bytes(b"previous weights")
    before = snapshot(out)

    def fail(self) -> None:
        raise DataError("dev.jsonl: simulated failure after the first epoch")

    monkeypatch.setattr(ASRModule, "on_validation_epoch_end", fail)
    refuse(["train", tiny_train_yaml(tmp_path, out), "--no-test"], capsys, "simulated failure")
    assert snapshot(out) == before
    _no_staging_left(out)
    monkeypatch.undo()
    assert main(["train", str(tiny_train_yaml(tmp_path, out)), "--no-test"]) == 0  # success swaps in
    assert (out / "checkpoints" / "best.ckpt").read_bytes() != b"previous weights"
    assert "data:" in (out / "config.yaml").read_text()
    assert (out / "notes.txt").read_text() == "the user's own file\n"  # not ours: carried over
    assert str(out / "checkpoints") in capsys.readouterr().out
    _no_staging_left(out)


@pytest.mark.parametrize("case", ["out_is_a_folder", "out_under_a_file", "corpus_out_is_a_file",
                                  "quantize_out_is_a_file"])
def test_unwritable_outputs_are_refused_before_the_work(tmp_path: Path, capsys, case: str) -> None:
    ckpt = save_checkpoint(tiny_module(), tmp_path / "model.ckpt")
    data = fsdd_manifest(tmp_path / "m.jsonl")
    target = tmp_path / "target"
    if case == "out_is_a_folder":
        target.mkdir()
        argv = ["evaluate", ckpt, "--data", data, "--out", target]
    elif case == "out_under_a_file":  # (a read-only folder is the same check, but root may write anyway)
        target.write_text("a file")
        target = target / "wer.json"
        argv = ["evaluate", ckpt, "--data", data, "--out", target]
    elif case == "corpus_out_is_a_file":
        target.write_text("a file")
        argv = ["corpus", "synth", "--out", target, "--utterances", 3]
    else:
        target.write_text("a file")
        argv = ["quantize", ckpt, "--calib", data, "--data", data, "--out", target]
    before = snapshot(tmp_path)
    refuse(argv, capsys, str(target))
    assert snapshot(tmp_path) == before
