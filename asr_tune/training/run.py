"""One training run and checkpoint evaluation — no Ray involved.

Usage::

    asr-tune train configs/synth_tiny.yaml
    asr-tune train configs/fsdd_digits.yaml --set optim.lr=2e-3 --set trainer.max_epochs=30
    asr-tune evaluate runs/train/checkpoints/best.ckpt --data data/synth/test.jsonl --out wer.json
"""
from __future__ import annotations

import json
import math
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
from asr_tune.data.datamodule import ASRDataModule, mix_rows, validated_rows
from asr_tune.data.datamodule import DECODE_BATCH_SECONDS
from asr_tune.data.manifest import Utterance
from asr_tune.model.decoding import WERStats, wer_stats
from asr_tune.model.lightning_module import ASRModule, load_asr_checkpoint
from asr_tune.training.averaging import AVERAGED, average_checkpoints, top_k_callback
from asr_tune.training.console import console_callbacks
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


_said_cpu_fallback = False


def resolve_accelerator(cfg: ExperimentConfig) -> str:
    """``auto`` follows ``torch.cuda.is_available()``, not the GPUs Ray declared for the process: a
    trial on a node whose declared GPUs have no CUDA device trains on CPU (said once per process)."""
    global _said_cpu_fallback
    acc = cfg.trainer.accelerator
    if acc == "auto":
        if torch.cuda.is_available():
            return "gpu"
        if cfg.resources.gpus_per_worker and not _said_cpu_fallback:
            import os

            _said_cpu_fallback = True
            log.warning("resources.gpus_per_worker=%g but no CUDA device is visible here "
                        "(CUDA_VISIBLE_DEVICES=%r): training on CPU", cfg.resources.gpus_per_worker,
                        os.environ.get("CUDA_VISIBLE_DEVICES", ""))
        return "cpu"
    return "gpu" if acc == "cuda" else acc


@dataclass
class Prepared:
    module: ASRModule
    datamodule: ASRDataModule
    tokenizer: Tokenizer
    report_every_batches: int = 0  # validate + report every N training batches (0 = each epoch)

    def loop_kwargs(self) -> dict[str, Any]:
        """Trainer arguments for the report interval (Lightning counts it in training batches)."""
        if not self.report_every_batches:
            return {}
        return {"val_check_interval": self.report_every_batches, "check_val_every_n_epoch": None}


def report_interval(cfg: ExperimentConfig, dm: ASRDataModule) -> int:
    """Training batches between reports: ``report_every_steps`` optimizer steps, or the batches that
    hold ``report_every_audio_s`` seconds of training audio (so one report means the same amount of
    training whatever the corpus size); 0 = once per epoch."""
    t = cfg.trainer
    if t.report_every_steps:
        return t.report_every_steps * cfg.optim.grad_accum
    if t.report_every_audio_s:
        audio_s, n_batches = dm.train_sampler().epoch_audio_s()
        return max(1, round(t.report_every_audio_s / (audio_s / max(n_batches, 1))))
    return 0


def report_budget(cfg: ExperimentConfig, prep: "Prepared | None" = None) -> int:
    """Reports in one full-length trial (the searchers' ``max_t``): epochs, or, with report rounds,
    ``max_steps`` split into rounds (the audio-based interval needs the data: ``prep``)."""
    t = cfg.trainer
    if t.report_every_steps:
        return math.ceil(t.max_steps / t.report_every_steps)
    if t.report_every_audio_s:
        if prep is None:
            return t.max_steps  # an upper bound: at most one report per step
        return math.ceil(t.max_steps * cfg.optim.grad_accum / prep.report_every_batches)
    return t.max_epochs


def prepare(cfg: ExperimentConfig, tokenizer: Tokenizer | None = None) -> Prepared:
    """Validate data, train the tokenizer on the train transcripts (main corpus and mix), open the
    feature cache (building missing entries), build module + datamodule."""
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    ensure_corpus(cfg)
    rows = {s: validated_rows(getattr(cfg.data, s), cfg.data, s) for s in ("train", "dev")}
    if cfg.data.limit_train:
        rows["train"] = rows["train"][: cfg.data.limit_train]
    mixes = mix_rows(cfg.data)
    tok = tokenizer or train_tokenizer([u.text for g in [rows["train"], *mixes] for u in g], cfg.tokenizer)
    dm = ASRDataModule(cfg.data, cfg.features, tok, cfg.trainer.seed, rows["train"], rows["dev"],
                       mix_rows=mixes, clean_batches=cfg.trainer.clean_steps * cfg.optim.grad_accum)
    dm.dataset("train"), dm.dataset("dev")  # build/validate the feature cache before the first step
    return Prepared(ASRModule(cfg, tok), dm, tok, report_interval(cfg, dm))


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
    """Best/last checkpoints (when ``ckpt_dir``) and early stopping, both on ``search.metric`` /
    ``search.mode`` (``val_wer``, ``min`` by default): the metric a search ranks trials by."""
    metric, mode = cfg.search.metric, cfg.search.mode
    cbs: list[Callback] = []
    if ckpt_dir is not None:
        cbs.append(ModelCheckpoint(dirpath=str(ckpt_dir), filename="best", monitor=metric, mode=mode,
                                   save_top_k=1, save_last=True, enable_version_counter=False))
    if cfg.trainer.early_stopping_patience:
        cbs.append(EarlyStopping(monitor=metric, mode=mode, patience=cfg.trainer.early_stopping_patience))
    return cbs


@dataclass
class TrainResult:
    best_checkpoint: str
    best_val_wer: float
    test: dict | None
    epochs: int
    wall_s: float
    n_params: int
    metric: str = "val_wer"  # what picked the best checkpoint (search.metric)
    best_score: float = float("nan")  # its best value; best_val_wer is NaN unless metric is val_wer
    averaged: dict | None = None  # trainer.average_top_k: the average's dev WER and whether it was kept

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
    with staged_dir(dest, owned=RUN_ENTRIES, error=ConfigError, keep_partial=_has_checkpoints) as stage:
        result = _train_into(stage, cfg, evaluate_test)
        result.best_checkpoint = str(restage(Path(result.best_checkpoint), stage, dest))
        if result.test is not None:
            (stage / "test_wer.json").write_text(json.dumps(
                {**result.test, "checkpoint": result.best_checkpoint, "data": str(cfg.data.test)}, indent=2))
        (stage / "result.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result


RUN_ENTRIES = ("config.yaml", "checkpoints", "logs", "test_wer.json", "result.json")


def _has_checkpoints(stage: Path) -> bool:
    """An interrupted run that already saved checkpoints keeps them (see ``staged_dir``)."""
    return any((stage / "checkpoints").glob("*.ckpt"))


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
    callbacks = standard_callbacks(cfg, ckpt_cb_dir) + console_callbacks(cfg)  # epoch lines without a bar
    top = top_k_callback(cfg, ckpt_cb_dir) if cfg.trainer.average_top_k > 1 else None
    trainer = make_trainer(cfg, callbacks + ([top] if top else []), out, **prep.loop_kwargs())
    trainer.fit(prep.module, datamodule=prep.datamodule)
    ckpt = next(cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint))
    best = ckpt.best_model_path or ckpt.last_model_path
    score = float("nan" if ckpt.best_model_score is None else ckpt.best_model_score)
    result = TrainResult(best, score if ckpt.monitor == "val_wer" else float("nan"), None,
                         trainer.current_epoch, 0.0,
                         sum(p.numel() for p in prep.module.model.parameters()), ckpt.monitor, score)
    if top is not None and len(top.best_k_models) > 1 and ckpt.monitor == "val_wer":
        _keep_average_if_better(result, cfg, [Path(p) for p in top.best_k_models], ckpt_cb_dir)
    if evaluate_test:
        result.test = evaluate(best, cfg.data.test, out_json=out / "test_wer.json").to_dict()
    result.wall_s = time.perf_counter() - start
    (out / "result.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result


def _keep_average_if_better(result: TrainResult, cfg: ExperimentConfig, tops: list[Path],
                            ckpt_dir: Path) -> None:
    """Average the top-k checkpoints; the result points at the average only if its dev WER (scored
    the same way as the single best's, on the full dev split) is lower."""
    averaged = average_checkpoints(tops, ckpt_dir / AVERAGED)
    dev_best = evaluate(result.best_checkpoint, cfg.data.dev).wer
    dev_avg = evaluate(averaged, cfg.data.dev).wer
    log.info("checkpoint average of %d: dev WER %.2f%% vs best single %.2f%%", len(tops), dev_avg, dev_best)
    result.averaged = {"k": len(tops), "dev_wer": dev_avg, "best_single_dev_wer": dev_best,
                       "kept": dev_avg < dev_best}
    if dev_avg < dev_best:
        result.best_checkpoint, result.best_val_wer, result.best_score = str(averaged), dev_avg, dev_avg


@torch.inference_mode()
def transcribe_rows(module: ASRModule, rows: list[Utterance], batch_seconds: float = DECODE_BATCH_SECONDS,
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
             batch_seconds: float = DECODE_BATCH_SECONDS, skip_bad_utterances: bool = False) -> WERStats:
    """WER of a float checkpoint on a manifest or LibriSpeech folder (float or int8, chosen by what
    the path holds: :func:`asr_tune.scoring.evaluate`)."""
    return evaluate_module(load_asr_checkpoint(checkpoint), checkpoint, data, out_json, batch_seconds,
                           skip_bad_utterances)


def evaluate_module(module: Any, checkpoint: str | Path, data: str | Path,
                    out_json: str | Path | None = None, batch_seconds: float = DECODE_BATCH_SECONDS,
                    skip_bad_utterances: bool = False) -> WERStats:
    """WER of a loaded model (an ``ASRModule``, or an int8 model with the same ``cfg``, ``tok``,
    ``transcribe``) on a manifest or LibriSpeech folder; ``checkpoint`` is recorded in ``out_json``."""
    from asr_tune.data.text import warn_unemittable
    from asr_tune.staging import check_output_file, write_text_atomic

    if out_json:  # before the work, not after it
        check_output_file(out_json, ConfigError)
    dcfg = module.cfg.data.model_copy(update={"max_duration": 1e9,
                                              "skip_bad_utterances": skip_bad_utterances,
                                              "source_sample_rate": 0})  # each file resampled to the model's rate
    rows = validated_rows(str(data), dcfg, "evaluation")
    warn_unemittable([r.text for r in rows], module.tok, str(data))  # e.g. a script never trained on
    hyps = transcribe_rows(module, rows, batch_seconds)
    stats = wer_stats([r.text for r in rows], hyps)
    if out_json:
        from asr_tune.model.decoding import top_substitutions

        write_text_atomic(out_json, json.dumps({
            **stats.to_dict(), "checkpoint": str(checkpoint), "data": str(data),
            "top_substitutions": top_substitutions([r.text for r in rows], hyps),
            "utterances": [{"id": r.id, "speaker": r.speaker, "ref": r.text, "hyp": h}
                           for r, h in zip(rows, hyps)]}, indent=1))
    return stats
