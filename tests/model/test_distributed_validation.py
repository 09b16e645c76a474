"""Distributed validation: a 2-rank (gloo, CPU) val WER and val loss equal the single-process ones
of the same weights on the same split. The dev split's batches do not divide evenly across the ranks,
so the sampler pads a rank with a duplicate batch, which must not be counted; and the loss is the
mean over all ranks' utterances, not a mean of per-rank means."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the session's tiny trained model, 3 short validation processes

WORKER = r'''
import json, sys
import lightning as L
from asr_tune.data.datamodule import ASRDataModule, validated_rows
from asr_tune.model.lightning_module import load_asr_checkpoint

ckpt, dev, world, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
module = load_asr_checkpoint(ckpt)
cfg = module.cfg
dcfg = cfg.data.model_copy(update={"batch_size": 3, "bucketing": True})
rows = validated_rows(dev, dcfg, "dev")
dm = ASRDataModule(dcfg, cfg.features, module.tok, 0, train_rows=rows, dev_rows=rows)
trainer = L.Trainer(accelerator="cpu", devices=world, strategy="ddp" if world > 1 else "auto",
                    logger=False, enable_progress_bar=False, enable_model_summary=False,
                    use_distributed_sampler=False, enable_checkpointing=False)
trainer.validate(module, datamodule=dm, verbose=False)
if trainer.is_global_zero:
    json.dump({k: float(v) for k, v in trainer.callback_metrics.items()}, open(out, "w"))
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _validate(ckpt: Path, dev: Path, world: int, out: Path, script: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    procs = []
    if world > 1:
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(world),
                   NODE_RANK="0")
    for rank in range(world):
        e = {**env, "LOCAL_RANK": str(rank), "RANK": str(rank)} if world > 1 else env
        procs.append(subprocess.Popen([sys.executable, str(script), str(ckpt), str(dev), str(world), str(out)],
                                      env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(x[-3000:] for x in logs)
    return json.loads(out.read_text())


def test_two_rank_validation_equals_single_process(tiny_trained: dict, tmp_path: Path) -> None:
    rows = [json.loads(x) for x in Path(tiny_trained["dev"]).read_text().splitlines() if x.strip()][:13]
    dev = tmp_path / "dev.jsonl"
    dev.write_text("".join(json.dumps(r) + "\n" for r in rows))  # 13 utterances = 5 batches of <= 3
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    single = _validate(tiny_trained["ckpt"], dev, 1, tmp_path / "single.json", script)
    double = _validate(tiny_trained["ckpt"], dev, 2, tmp_path / "double.json", script)
    assert single["val_utts"] == 13 and 0 < single["val_wer"] < 100
    assert double["val_utts"] == 13  # the padded duplicate batch is not counted
    assert double["val_wer"] == pytest.approx(single["val_wer"])
    assert double["val_loss"] == pytest.approx(single["val_loss"], rel=1e-4)
