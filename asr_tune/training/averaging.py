"""Checkpoint averaging: the weights of the k best checkpoints of a run, averaged (as icefall and
ESPnet do), kept only when it scores better on the dev split than the single best checkpoint.

Validation WER of a small model jumps from one report to the next; the average of the best few
points is usually a flatter, better minimum. The choice is made on dev, never on test.

Usage::

    trainer.average_top_k: 5        # in the YAML; asr-tune train then writes checkpoints/averaged.ckpt
"""
from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from asr_tune.config import ExperimentConfig
from asr_tune.model.safe_load import load_checkpoint_file

TOP_DIR = "top"
AVERAGED = "averaged.ckpt"


class TopK(ModelCheckpoint):
    """A second ``ModelCheckpoint`` beside the best/last one: Lightning needs a distinct state key."""

    @property
    def state_key(self) -> str:
        return "TopK" + super().state_key


def top_k_callback(cfg: ExperimentConfig, ckpt_dir: Path) -> ModelCheckpoint:
    """Keeps the ``trainer.average_top_k`` best checkpoints (by ``search.metric``) under ``top/``."""
    return TopK(dirpath=str(ckpt_dir / TOP_DIR), filename="step{step}", auto_insert_metric_name=False,
                           monitor=cfg.search.metric, mode=cfg.search.mode, save_top_k=cfg.trainer.average_top_k,
                           enable_version_counter=False, save_weights_only=True)


def average_checkpoints(paths: list[Path], out: Path) -> Path:
    """Mean of the floating-point tensors of ``paths``' state dicts (integer buffers from the first),
    written with the first checkpoint's metadata (config, tokenizer) to ``out``."""
    first = load_checkpoint_file(paths[0])
    acc = {k: v.double().clone() if v.is_floating_point() else v for k, v in first["state_dict"].items()}
    for p in paths[1:]:
        sd = load_checkpoint_file(p)["state_dict"]
        for k, v in acc.items():
            if v.is_floating_point():
                v += sd[k].double()
    first["state_dict"] = {k: (v / len(paths)).to(first["state_dict"][k].dtype) if v.is_floating_point() else v
                           for k, v in acc.items()}
    for key in ("optimizer_states", "lr_schedulers", "callbacks", "loops"):
        first.pop(key, None)  # an averaged model is for inference, not for resuming
    torch.save(first, out)
    return out
