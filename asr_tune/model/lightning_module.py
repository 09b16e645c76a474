"""``ASRModule``: features + SpecAugment + Conformer-CTC in a LightningModule.

Hyperparameters always come from the ``ExperimentConfig`` the module is built with. When training
resumes from a checkpoint (a Tune trial restored after a pause, or a PBT exploit of another trial's
checkpoint), weights, optimiser moments and step counters are restored, but the optimiser's
hyperparameters (lr, weight decay, betas) and the schedule's base lr are rewritten from the current
config in ``on_load_checkpoint`` — so a PBT mutation is the value in effect.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from asr_tune.config import ExperimentConfig, OptimConfig, config_from_dict
from asr_tune.errors import ConfigError
from asr_tune.model.conformer import ConformerCTC
from asr_tune.model.decoding import decode_batch, wer_stats
from asr_tune.data.features import LogMel, SpecAugment
from asr_tune.data.tokenizer import BLANK, Tokenizer, tokenizer_from_state

CKPT_KEY = "asr_tune"
CKPT_VERSION = 1
DECAY_GROUP, NO_DECAY_GROUP = "decay", "no_decay"  # optimiser parameter groups


ONECYCLE_PCT_START = (0.01, 0.9)
"""``onecycle``: OneCycleLR's warm-up share is ``optim.warmup_steps`` / total steps, clamped into
this range (it must lie in (0, 1); near 1 no step would be left to anneal)."""


def onecycle_pct_start(warmup_steps: int, total_steps: int) -> float:
    low, high = ONECYCLE_PCT_START
    return min(max(warmup_steps / max(total_steps, 1), low), high)


def lr_lambda(cfg: OptimConfig, total_steps: int, d_model: int):
    """Multiplier on the base lr at optimiser step ``s`` for the configured schedule."""
    warm = max(cfg.warmup_steps, 1)
    total = max(total_steps, warm + 1)

    def warmup_cosine(s: int) -> float:
        if s < warm:
            return (s + 1) / warm
        progress = min((s - warm) / (total - warm), 1.0)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def noam(s: int) -> float:  # Vaswani et al.; normalised to peak 1.0 at the end of warmup
        s = s + 1
        return min(s ** -0.5, s * warm ** -1.5) * warm ** 0.5

    def constant(s: int) -> float:
        return min((s + 1) / warm, 1.0)

    return {"warmup_cosine": warmup_cosine, "noam": noam, "constant": constant}[cfg.schedule]


class ASRModule(L.LightningModule):
    def __init__(self, cfg: ExperimentConfig, tokenizer: Tokenizer) -> None:
        super().__init__()
        self.cfg, self.tok = cfg, tokenizer
        self.features = LogMel(cfg.features, cfg.data.sample_rate)
        self.specaug = SpecAugment(cfg.features)
        self.model = ConformerCTC(cfg.model, cfg.features.n_mels, tokenizer.vocab_size)
        self._val: list[tuple[list[str], list[str]]] = []
        self._val_loss: list[tuple[float, int]] = []  # (sum of per-utterance losses, utterances)
        self.last_val: dict[str, float] = {}

    # ---- inference -------------------------------------------------------------------------------
    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveforms ``(B, samples)`` -> CTC log-probs ``(B, T', vocab)`` and lengths (inference path)."""
        feats, flen = self.features(wav, wav_lens)
        return self.from_features(feats, flen)

    def from_features(self, feats: torch.Tensor, flen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised log-mels ``(B, T, n_mels)`` (what the data module yields) -> log-probs, lengths."""
        if self.training and self.global_step >= self.cfg.trainer.clean_steps:
            feats = self.specaug(feats)
        return self.model(feats, flen)

    def transcribe(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> list[str]:
        log_probs, out_len = self(wav, wav_lens)
        return decode_batch(log_probs, out_len, self.tok)

    # ---- training --------------------------------------------------------------------------------
    def _loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if "feats" in batch:
            log_probs, out_len = self.from_features(batch["feats"], batch["feat_lens"])
        else:
            log_probs, out_len = self(batch["wav"], batch["wav_lens"])
        loss = F.ctc_loss(log_probs.transpose(0, 1), batch["targets"], out_len, batch["target_lens"],
                          blank=BLANK, reduction="mean", zero_infinity=True)
        return loss, log_probs, out_len

    def _set_dropout(self, clean: bool) -> None:
        """No dropout during ``trainer.clean_steps`` (the configured rates otherwise)."""
        if clean == getattr(self, "_clean", False):
            return
        self._clean = clean
        for m in self.model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0 if clean else self.cfg.model.dropout
            elif isinstance(m, torch.nn.MultiheadAttention):
                m.dropout = 0.0 if clean else self.cfg.model.dropout

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self._set_dropout(self.global_step < self.cfg.trainer.clean_steps)
        loss, _, _ = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["texts"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        _, log_probs, out_len = self._loss(batch)
        # per-utterance CTC loss (the terms of reduction="mean"), summed over this rank's real
        # utterances; a DDP padding repeat (batch["pad"]) counts for neither loss nor WER
        per_utt = F.ctc_loss(log_probs.transpose(0, 1), batch["targets"], out_len, batch["target_lens"],
                             blank=BLANK, reduction="none", zero_infinity=True)
        per_utt = per_utt / batch["target_lens"].clamp_min(1).to(per_utt)
        pad = batch.get("pad")
        keep = ~pad.to(per_utt.device) if pad is not None else torch.ones_like(per_utt, dtype=torch.bool)
        hyps, kept = decode_batch(log_probs, out_len, self.tok), keep.tolist()
        self._val.append(([t for t, k in zip(batch["texts"], kept) if k],
                          [h for h, k in zip(hyps, kept) if k]))
        self._val_loss.append((float(per_utt[keep].sum()), int(keep.sum())))

    def on_validation_epoch_end(self) -> None:
        refs = [r for refs, _ in self._val for r in refs]
        hyps = [h for _, hyps in self._val for h in hyps]
        self._val.clear()
        loss_sum, loss_n = sum(s for s, _ in self._val_loss), sum(n for _, n in self._val_loss)
        self._val_loss.clear()
        stats = wer_stats(refs, hyps)
        local_utts = float(stats.n_utts)
        counts = torch.tensor([stats.substitutions + stats.deletions + stats.insertions, stats.n_words,
                               stats.n_utts, loss_sum, loss_n],
                              dtype=torch.float64, device=self.device)
        if self.trainer.world_size > 1:  # corpus WER and mean loss over every rank's utterances
            counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
        wer = float(100.0 * counts[0] / counts[1].clamp_min(1))
        self.log("val_loss", float(counts[3] / counts[4].clamp_min(1)), prog_bar=True, sync_dist=False)
        self.log("val_wer", wer, prog_bar=True, sync_dist=False)
        self.log("val_utts", float(counts[2]), sync_dist=False)  # all ranks' utterances
        self.log("val_utts_local", local_utts, sync_dist=False, rank_zero_only=True)  # this rank's share
        self.last_val = {"val_wer": wer, "val_utts": float(counts[2]), "val_utts_local": local_utts}

    def configure_optimizers(self) -> Any:
        o = self.cfg.optim
        params = [p for p in self.parameters() if p.requires_grad]
        # no weight decay on biases and norm scales/shifts (every 0-/1-d tensor): decay would pull
        # LayerNorm/BatchNorm gains towards 0; groups are named so on_load_checkpoint keeps them apart
        groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": o.weight_decay,
                   "name": DECAY_GROUP},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0,
                   "name": NO_DECAY_GROUP}]
        groups = [g for g in groups if g["params"]]
        if o.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=o.lr, momentum=o.betas[0])
        else:
            cls = torch.optim.AdamW if o.optimizer == "adamw" else torch.optim.Adam
            opt = cls(groups, lr=o.lr, betas=o.betas)
        total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 1000
        if o.schedule == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=o.lr, total_steps=max(total, 2),
                pct_start=onecycle_pct_start(o.warmup_steps, total))
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(o, total, self.cfg.model.d_model))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ---- checkpoints -----------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CKPT_KEY] = {"version": CKPT_VERSION, "config": self.cfg.to_dict(),
                                "tokenizer": self.tok.state()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Keep restored optimiser state, but apply *this* config's optimiser hyperparameters."""
        o = self.cfg.optim
        for opt_state in checkpoint.get("optimizer_states", []):
            for group in opt_state.get("param_groups", []):
                # the saved base lr (OneCycle keeps it in max_lr); rescale every lr field by new/old
                old_base = group.get("max_lr") or group.get("initial_lr") or group.get("lr") or o.lr
                ratio = o.lr / old_base
                for key in ("lr", "initial_lr", "max_lr", "min_lr"):
                    if key in group:
                        group[key] = group[key] * ratio
                group["weight_decay"] = 0.0 if group.get("name") == NO_DECAY_GROUP else o.weight_decay
                if "betas" in group:
                    group["betas"] = tuple(o.betas)
        for sched_state in checkpoint.get("lr_schedulers", []):
            if "base_lrs" in sched_state and "max_lrs" not in sched_state:
                sched_state["base_lrs"] = [o.lr] * len(sched_state["base_lrs"])
            if "_last_lr" in sched_state:
                sched_state.pop("_last_lr")


def load_asr_checkpoint(path: str | Path, map_location: str = "cpu") -> ASRModule:
    """Rebuild an ``ASRModule`` (config, tokenizer, weights) from a checkpoint file, in eval mode.

    The file is read with ``weights_only=True`` (see ``safe_load``); a foreign pickle, a missing
    section, weights that do not fit the embedded config, or non-finite weights are one-line errors.
    """
    from asr_tune.model.safe_load import load_checkpoint_file

    path = Path(path)
    ckpt = load_checkpoint_file(path, map_location)
    meta = ckpt.get(CKPT_KEY)
    if not meta or not isinstance(meta, dict):
        raise ConfigError(f"{path}: not an asr-tune checkpoint (no '{CKPT_KEY}' section)")
    if meta.get("version") != CKPT_VERSION:
        raise ConfigError(f"{path}: checkpoint format version {meta.get('version')}, expected {CKPT_VERSION}")
    for key in ("config", "tokenizer"):
        if not isinstance(meta.get(key), dict):
            raise ConfigError(f"{path}: checkpoint lacks its {key} ('{CKPT_KEY}.{key}')")
    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or not state:
        raise ConfigError(f"{path}: checkpoint has no weights ('state_dict')")
    cfg = config_from_dict(meta["config"], f"{path} (embedded config)")
    try:
        tok = tokenizer_from_state(meta["tokenizer"])
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except Exception as err:  # a damaged SentencePiece proto, a wrong field type
        raise ConfigError(f"{path}: checkpoint tokenizer is unreadable ({type(err).__name__})") from None
    module = ASRModule(cfg, tok)
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # size mismatch: the weights were trained with another config
        first = next((ln.strip() for ln in str(err).splitlines() if "size mismatch" in ln), str(err).splitlines()[0])
        raise ConfigError(f"{path}: weights do not match the embedded config ({first[:200]})") from None
    if missing or unexpected:
        raise ConfigError(f"{path}: weights do not match the embedded config "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    bad = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ConfigError(f"{path}: {len(bad)} weight tensor(s) contain NaN/inf (first: {bad[0]}); "
                          "the model cannot produce transcripts")
    return module.eval()
