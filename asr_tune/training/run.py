"""One training run and checkpoint evaluation — no Ray involved.

Usage::

    asr-tune train configs/synth_tiny.yaml
    asr-tune train configs/fsdd_digits.yaml --set optim.lr=2e-3 --set trainer.max_epochs=30
    asr-tune evaluate runs/train/checkpoints/best.ckpt --data data/synth/test.jsonl --out wer.json
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from asr_tune.config import ExperimentConfig
from asr_tune.errors import ConfigError
from asr_tune.data.datamodule import ASRDataModule, validated_rows
from asr_tune.data.manifest import Utterance
from asr_tune.model.decoding import WERStats, wer_stats
from asr_tune.model.lightning_module import ASRModule, load_asr_checkpoint
from asr_tune.data.tokenizer import Tokenizer, train_tokenizer

log = logging.getLogger(__name__)


def ensure_corpus(cfg: ExperimentConfig) -> None:
    """Build the embedded synthetic corpus where the config points at it and it is absent."""
    paths = [Path(cfg.data.train), Path(cfg.data.dev), Path(cfg.data.test)]
    if all(p.exists() for p in paths) or not cfg.data.synth_if_missing:
        return
    out = paths[0].parent
    if any(p.parent != out or p.name != f"{s}.jsonl" for p, s in zip(paths, ("train", "dev", "test"))):
        return  # not laid out like a synth corpus: let the reader report what is missing
    from asr_tune.data.synth import build_synth_corpus

    log.info("building the synthetic corpus in %s", out)
    build_synth_corpus(out, n_utterances=cfg.data.synth_utterances, seed=cfg.data.synth_seed,
                       sample_rate=cfg.data.sample_rate)


def resolve_precision(cfg: ExperimentConfig, accelerator: str) -> str:
    if cfg.trainer.precision != "auto":
        return cfg.trainer.precision
    if accelerator == "gpu":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"  # bf16 autocast is slower than fp32 on CPUs without bf16 units (see benchmarks)


def resolve_accelerator(cfg: ExperimentConfig) -> str:
    acc = cfg.trainer.accelerator
    if acc == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return "gpu" if acc == "cuda" else acc


@dataclass
class Prepared:
    module: ASRModule
    datamodule: ASRDataModule
    tokenizer: Tokenizer


def prepare(cfg: ExperimentConfig) -> Prepared:
    """Validate data, train the tokenizer on the train transcripts, build module + datamodule."""
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    ensure_corpus(cfg)
    rows = {s: validated_rows(getattr(cfg.data, s), cfg.data, s) for s in ("train", "dev")}
    if cfg.data.limit_train:
        rows["train"] = rows["train"][: cfg.data.limit_train]
    tok = train_tokenizer([u.text for u in rows["train"]], cfg.tokenizer)
    dm = ASRDataModule(cfg.data, cfg.features, tok, cfg.trainer.seed, rows["train"], rows["dev"])
    return Prepared(ASRModule(cfg, tok), dm, tok)


def make_trainer(cfg: ExperimentConfig, callbacks: list[Callback], out_dir: Path, **overrides: Any
                 ) -> L.Trainer:
    accelerator = resolve_accelerator(cfg)
    kwargs: dict[str, Any] = dict(
        accelerator=accelerator, devices=cfg.trainer.devices, max_epochs=cfg.trainer.max_epochs,
        max_steps=cfg.trainer.max_steps, precision=resolve_precision(cfg, accelerator),
        accumulate_grad_batches=cfg.optim.grad_accum,
        gradient_clip_val=cfg.optim.grad_clip or None, callbacks=callbacks,
        logger=CSVLogger(str(out_dir), name="logs"), default_root_dir=str(out_dir),
        enable_progress_bar=cfg.trainer.progress_bar, log_every_n_steps=cfg.trainer.log_every_n_steps,
        num_sanity_val_steps=0, use_distributed_sampler=False, enable_model_summary=False)
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


def standard_callbacks(cfg: ExperimentConfig, ckpt_dir: Path | None) -> list[Callback]:
    cbs: list[Callback] = []
    if ckpt_dir is not None:
        cbs.append(ModelCheckpoint(dirpath=str(ckpt_dir), filename="best", monitor="val_wer", mode="min",
                                   save_top_k=1, save_last=True, enable_version_counter=False))
    if cfg.trainer.early_stopping_patience:
        cbs.append(EarlyStopping(monitor="val_wer", mode="min", patience=cfg.trainer.early_stopping_patience))
    return cbs


@dataclass
class TrainResult:
    best_checkpoint: str
    best_val_wer: float
    test: dict | None
    epochs: int
    wall_s: float
    n_params: int

    def to_dict(self) -> dict:
        return asdict(self)


def train(cfg: ExperimentConfig, evaluate_test: bool = True) -> TrainResult:
    """Train one model from ``cfg``; best/last checkpoints under ``trainer.output_dir``.

    The run is built in a staging sibling of ``trainer.output_dir`` and swapped in when it completes
    (``asr_tune.staging``): a failing or interrupted run leaves a previous run there byte-identical.
    """
    from asr_tune.staging import restage, staged_dir

    check_accelerator(cfg)
    dest = Path(cfg.trainer.output_dir)
    with staged_dir(dest, owned=RUN_ENTRIES, error=ConfigError) as stage:
        result = _train_into(stage, cfg, evaluate_test)
        result.best_checkpoint = str(restage(Path(result.best_checkpoint), stage, dest))
        if result.test is not None:
            (stage / "test_wer.json").write_text(json.dumps(
                {**result.test, "checkpoint": result.best_checkpoint, "data": str(cfg.data.test)}, indent=2))
        (stage / "result.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result


RUN_ENTRIES = ("config.yaml", "checkpoints", "logs", "test_wer.json", "result.json")


def check_accelerator(cfg: ExperimentConfig) -> None:
    """``trainer.accelerator: gpu`` on a machine without CUDA is one line, before anything is written."""
    if resolve_accelerator(cfg) == "gpu" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator: {cfg.trainer.accelerator!r} but this machine has no CUDA GPU "
                          "(torch.cuda.is_available() is False); use 'cpu' or 'auto'")


def _train_into(out: Path, cfg: ExperimentConfig, evaluate_test: bool) -> TrainResult:
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    start = time.perf_counter()
    prep = prepare(cfg)
    cfg.dump_yaml(out / "config.yaml")
    ckpt_cb_dir = out / "checkpoints"
    trainer = make_trainer(cfg, standard_callbacks(cfg, ckpt_cb_dir), out)
    trainer.fit(prep.module, datamodule=prep.datamodule)
    ckpt = next(cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint))
    best = ckpt.best_model_path or ckpt.last_model_path
    result = TrainResult(best, float("nan" if ckpt.best_model_score is None else ckpt.best_model_score), None,
                         trainer.current_epoch, 0.0,
                         sum(p.numel() for p in prep.module.model.parameters()))
    if evaluate_test:
        result.test = evaluate(best, cfg.data.test, out_json=out / "test_wer.json").to_dict()
    result.wall_s = time.perf_counter() - start
    (out / "result.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result


@torch.inference_mode()
def transcribe_rows(module: ASRModule, rows: list[Utterance], batch_seconds: float = 60.0,
                    device: str | None = None) -> list[str]:
    """Greedy transcripts of ``rows`` in their original order (bucketed by duration)."""
    from asr_tune.data.datamodule import BatchPlan, DurationBatchSampler, SpeechDataset, collate

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    module = module.to(device).eval()
    ds = SpeechDataset(rows, module.tok, module.cfg.data.sample_rate)
    sampler = DurationBatchSampler([r.duration for r in rows], BatchPlan(batch_seconds, 0, True, False, 0))
    hyps: list[str] = [""] * len(rows)
    for idx in sampler:
        batch = collate([ds[i] for i in idx])
        texts = module.transcribe(batch["wav"].to(device), batch["wav_lens"].to(device))
        for i, h in zip(idx, texts):
            hyps[i] = h
    return hyps


def evaluate(checkpoint: str | Path, data: str | Path, out_json: str | Path | None = None,
             batch_seconds: float = 60.0, skip_bad_utterances: bool = False) -> WERStats:
    """WER of a float checkpoint on a manifest or LibriSpeech folder (float or int8, chosen by what
    the path holds: :func:`asr_tune.scoring.evaluate`)."""
    return evaluate_module(load_asr_checkpoint(checkpoint), checkpoint, data, out_json, batch_seconds,
                           skip_bad_utterances)


def evaluate_module(module: Any, checkpoint: str | Path, data: str | Path,
                    out_json: str | Path | None = None, batch_seconds: float = 60.0,
                    skip_bad_utterances: bool = False) -> WERStats:
    """WER of a loaded model (an ``ASRModule``, or an int8 model with the same ``cfg``, ``tok``,
    ``transcribe``) on a manifest or LibriSpeech folder; ``checkpoint`` is recorded in ``out_json``."""
    from asr_tune.staging import check_output_file, write_text_atomic

    if out_json:  # before the work, not after it
        check_output_file(out_json, ConfigError)
    dcfg = module.cfg.data.model_copy(update={"max_duration": 1e9,
                                              "skip_bad_utterances": skip_bad_utterances})
    rows = validated_rows(str(data), dcfg, "evaluation")
    hyps = transcribe_rows(module, rows, batch_seconds)
    stats = wer_stats([r.text for r in rows], hyps)
    if out_json:
        write_text_atomic(out_json, json.dumps({**stats.to_dict(), "checkpoint": str(checkpoint),
                                                "data": str(data)}, indent=2))
    return stats
