"""The Tune trial: build data + model from the trial config, restore, train, report every epoch.

- config = base config + the sampled dotted overrides, validated again (``trial_config``);
- a restored trial (paused by BOHB/Hyperband, exploited by PBT, retried after a failure) loads
  weights + optimiser + epoch from the Tune checkpoint; hyperparameters always come from the trial
  config (see ``ASRModule.on_load_checkpoint``);
- every validation reports ``val_wer``, ``val_loss``, ``epoch`` (fractional) and a checkpoint:
  once per epoch, or every ``trainer.report_every_steps`` optimizer steps / ``report_every_audio_s``
  seconds of training audio, so ``training_iteration`` counts a fixed amount of training whatever
  the corpus size and ASHA/Hyperband rungs and PBT intervals mean the same across tasks.

Single-worker trials run Lightning in the Tune function. Multi-worker (DDP/FSDP) trials launch a Ray
Train ``TorchTrainer`` (Train V2) from the Tune function; rank reports travel back through a queue and
are re-reported to Tune with the persisted checkpoint, so schedulers can pause/exploit them too.
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import lightning as L
from lightning.pytorch.callbacks import Callback

from asr_tune.config import ExperimentConfig, config_from_dict
from asr_tune.tuning.folder import WALL_TIME_KEY

CKPT_FILE = "checkpoint.ckpt"
ABORT_TIMEOUT_S = 20.0  # per stage of aborting a Train run: the controller's abort, then fit's return
# How long a reused Tune actor waits for the previous trial's function to return before it gives up on
# reuse (Tune's default is 2 s, which an aborted Train run needs longer than; a failed reuse errors the
# next trial and, in Ray 2.60, leaves the search waiting on it forever).
THREAD_TIMEOUT_ENV = "TUNE_FUNCTION_THREAD_TIMEOUT_S"
ReportFn = Callable[[dict[str, float], "str | None"], None]


def trial_config(base: dict[str, Any], sampled: dict[str, Any]) -> ExperimentConfig:
    from asr_tune.tuning.space import trial_overrides

    cfg = config_from_dict(base, "search base config")
    return cfg.with_overrides(trial_overrides(sampled, cfg.search.space), source="trial config")


def weights_hash(module: L.LightningModule) -> str:
    """A short content hash of the module's weights (which checkpoint a trial really runs on)."""
    import hashlib

    import torch

    h = hashlib.blake2b(digest_size=8)
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return h.hexdigest()


class EpochReporter(Callback):
    """Save a full Lightning checkpoint and report metrics after every validation run: once per
    epoch, or every ``trainer.report_every_steps`` / ``report_every_audio_s`` when those are set.

    Every report carries ``weights_hash`` (the weights in the checkpoint it hands to Tune) and
    ``restored_hash`` (the weights this run started from after restoring a Tune checkpoint: a
    paused trial's own, a PBT exploit's donor's; "" for a fresh start), so a restore is checkable.
    """

    def __init__(self, report: ReportFn, extra: dict[str, float] | None = None,
                 restored: bool = False) -> None:
        self.report, self.extra, self.restored, self.restored_hash = report, extra or {}, restored, ""

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.restored:  # Lightning restores the weights before the train loop starts
            self.restored_hash = weights_hash(module)

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        m = trainer.callback_metrics
        metrics = {k: float(m[k]) for k in ("val_wer", "val_loss", "train_loss", "val_utts", "val_utts_local") if k in m}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        epoch = trainer.current_epoch + min(done / max(trainer.num_training_batches, 1), 1.0)
        metrics.update(epoch=round(epoch, 4), global_step=trainer.global_step,
                       lr=float(trainer.optimizers[0].param_groups[0]["lr"]), **self.extra,
                       weights_hash=weights_hash(module), restored_hash=self.restored_hash,
                       **{WALL_TIME_KEY: time.time()})
        with tempfile.TemporaryDirectory(prefix="asr_tune_ckpt_") as tmp:
            # full state (optimiser, loops): a restore continues; collective under DDP
            trainer.save_checkpoint(os.path.join(tmp, CKPT_FILE), weights_only=False)
            self.report(metrics, tmp if trainer.is_global_zero else None)


def _fit(cfg: ExperimentConfig, report: ReportFn, resume_dir: str | None, **trainer_kw: Any) -> None:
    from asr_tune.model.safe_load import allowed_globals, load_checkpoint_file
    from asr_tune.data.tokenizer import tokenizer_from_state
    from asr_tune.training.run import make_trainer, prepare, standard_callbacks

    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    ckpt_path = os.path.join(resume_dir, CKPT_FILE) if resume_dir else None
    # weights_only: no code from the checkpoint runs; read before any data work so a foreign file fails fast
    meta = (load_checkpoint_file(ckpt_path).get("asr_tune") or {}) if ckpt_path else {}
    # decode with the tokenizer the restored weights were trained with
    prep = prepare(cfg, tokenizer_from_state(meta["tokenizer"]) if meta.get("tokenizer") else None)
    module = prep.module
    callbacks = standard_callbacks(cfg, None) + [EpochReporter(report, {"n_params": float(
        sum(p.numel() for p in module.model.parameters()))}, restored=ckpt_path is not None)]
    out = Path(tempfile.mkdtemp(prefix="asr_tune_trial_"))
    trainer = make_trainer(cfg, callbacks, out, enable_checkpointing=False, enable_progress_bar=False,
                           **prep.loop_kwargs(), **trainer_kw)
    with allowed_globals():  # Lightning's restore reads the same file weights-only too
        trainer.fit(module, datamodule=prep.datamodule, ckpt_path=ckpt_path, weights_only=True)


# ---- single worker -------------------------------------------------------------------------------
def _tune_report(metrics: dict[str, float], ckpt_dir: str | None) -> None:
    from ray import tune

    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None)


def run_trial(config: dict[str, Any], base: dict[str, Any]) -> None:
    """The Tune function trainable (bound to the base config with ``tune.with_parameters``)."""
    from ray import tune

    cfg = trial_config(base, config)
    ckpt = tune.get_checkpoint()
    if cfg.resources.strategy != "single":
        return _run_multi_worker(cfg, ckpt)
    report = _placed(_tune_report, cfg)
    if ckpt is None:
        return _fit(cfg, report, None)
    with ckpt.as_directory() as d:
        _fit(cfg, report, d)


def _placed(report: ReportFn, cfg: ExperimentConfig) -> ReportFn:
    """``report`` plus where this process runs (node id, GPU ids, accelerator) in every result."""
    from asr_tune.training.run import resolve_accelerator
    from asr_tune.tuning.placement import where_am_i

    here = where_am_i(resolve_accelerator(cfg))
    return lambda metrics, ckpt_dir: report({**metrics, **here}, ckpt_dir)


# ---- multi worker (DDP / FSDP through Ray Train) -------------------------------------------------
def _train_report(metrics: dict[str, float], ckpt_dir: str | None) -> None:
    import ray.train

    ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None)


def _worker_loop(loop_cfg: dict[str, Any]) -> None:
    """Runs on every Ray Train worker: Lightning with the Ray DDP/FSDP strategy."""
    import ray.train
    from ray.train.lightning import RayDDPStrategy, RayFSDPStrategy, RayLightningEnvironment

    from asr_tune.training.run import resolve_accelerator

    cfg = config_from_dict(loop_cfg["config"], "trial config")
    kind = RayFSDPStrategy if cfg.resources.strategy == "fsdp" else RayDDPStrategy
    if resolve_accelerator(cfg) == "cpu":  # declared GPUs without CUDA: Ray's device would be cuda:N
        import torch

        kind = type(f"Cpu{kind.__name__}", (kind,), {"root_device": property(lambda _: torch.device("cpu"))})
    strategy = kind()
    kw = dict(strategy=strategy, plugins=[RayLightningEnvironment()], devices="auto")
    ckpt = ray.train.get_checkpoint() or loop_cfg.get("resume")  # worker retry first, then Tune's
    report = _placed(_train_report, cfg)
    if ckpt is None:
        return _fit(cfg, report, None, **kw)
    with ckpt.as_directory() as d:
        _fit(cfg, report, d, **kw)


def _run_multi_worker(cfg: ExperimentConfig, resume: Any) -> None:
    import ray.train
    from ray import tune
    from ray.train.torch import TorchTrainer
    from ray.train.v2.api.callback import UserCallback
    from ray.util.queue import Empty, Queue

    from asr_tune.tuning.placement import scaling_config, torch_config

    # read by this actor's reset_config when Tune reuses it for the next trial (see THREAD_TIMEOUT_ENV)
    os.environ.setdefault(THREAD_TIMEOUT_ENV, str(int(3 * ABORT_TIMEOUT_S)))
    queue: Queue = Queue(actor_options={"num_cpus": 0})

    class ForwardToTune(UserCallback):
        """Runs in the Train controller: hand each rank-0 report (and its checkpoint) to the trial."""

        def __init__(self, q: Queue) -> None:
            self.q, self.sent_handle = q, False

        def after_report(self, run_context: Any, metrics: list[dict], checkpoint: Any) -> None:
            if not self.sent_handle:  # the trial aborts the run through the controller's handle
                import ray

                self.q.put({"controller": ray.get_runtime_context().current_actor})
                self.sent_handle = True
            from asr_tune.tuning.placement import merge_ranks

            self.q.put({"metrics": {**metrics[0], **merge_ranks(metrics)}, "checkpoint": checkpoint})

    ctx = tune.get_context()
    storage = ctx.get_storage()  # the trial's own storage (shared, pruned with the experiment)
    trainer = TorchTrainer(
        _worker_loop, train_loop_config={"config": cfg.to_dict(), "resume": resume},
        torch_config=torch_config(cfg.resources),  # nccl only where the workers see CUDA
        scaling_config=scaling_config(cfg.resources),
        run_config=ray.train.RunConfig(
            # a fresh run name per (re)start: Train V2 would otherwise restore its own last snapshot
            # and prefer it over the Tune checkpoint it is given (a PBT exploit's donor weights)
            name=f"train_{ctx.get_trial_id()}_{uuid.uuid4().hex[:8]}",
            storage_path=f"{storage.trial_fs_path}/ray_train", storage_filesystem=storage.storage_filesystem,
            callbacks=[ForwardToTune(queue)],
            failure_config=ray.train.FailureConfig(max_failures=cfg.search.max_failures)))
    box: dict[str, BaseException] = {}

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as err:  # re-raised in the trial thread
            box["error"] = err

    thread = threading.Thread(target=fit, name="torch-trainer", daemon=True)
    thread.start()
    controller, stopped = None, False
    try:
        while thread.is_alive() or not queue.empty():
            try:
                item = queue.get(timeout=1.0)
            except Empty:
                if _tune_stopping():  # stopped/paused between reports: do not wait for the next one
                    stopped = True
                    break
                continue
            if "controller" in item:
                controller = item["controller"]
                continue
            ck = item["checkpoint"]
            # when Tune stops or pauses the trial, this raises SystemExit in the trial thread
            tune.report(item["metrics"],
                        checkpoint=tune.Checkpoint(ck.path, filesystem=ck.filesystem) if ck else None)
    finally:
        if thread.is_alive():  # stopped, paused or failed here: the Train run must not train on
            abort_train_run(controller, thread)
    if "error" in box and not stopped:  # an aborted run's own error is not the trial's
        raise box["error"]


def _tune_stopping() -> bool:
    """Whether Tune asked this trial's function to stop (pause, scheduler stop, stopper)."""
    try:
        from ray.train._internal.session import get_session

        session = get_session()
        return bool(session is not None and session.stop_event.is_set())
    except (ImportError, AttributeError):
        return False


def abort_train_run(controller: Any, thread: threading.Thread, timeout_s: float = ABORT_TIMEOUT_S) -> None:
    """Abort a running Train V2 run (its controller and workers) and wait for ``fit`` to return."""
    import ray

    if controller is not None:
        try:
            ray.get(controller.abort.remote(), timeout=timeout_s)
        except Exception:  # the controller terminates itself: an actor error is the normal outcome
            pass
    thread.join(timeout_s)
