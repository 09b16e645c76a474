"""The classic Lightning speed-up table, for Conformer-CTC ASR on the embedded synthetic corpus.

Each row compares a baseline with one change, everything else equal, measured in the same run:

=====================  =========================================  ====================================
comparison             baseline -> variant                        measured
=====================  =========================================  ====================================
dataloader workers     ``num_workers`` 0 -> N (``--num-workers``)  samples/s, epoch time
pin_memory             off -> on (only matters with a GPU)         samples/s, epoch time
precision              32-true -> bf16-mixed (-> 16-mixed: GPU)    samples/s, epoch time
DDP                    1 -> 2 processes, Lightning ``ddp_spawn``   samples/s (global), epoch time
                       (gloo on CPU, nccl with >= 2 GPUs)
batching               length-bucketed -> random                   samples/s, epoch time, padding %
evaluation             grad enabled -> ``torch.inference_mode``    time, peak memory (also no_grad)
early stopping         off -> on (``--patience``)                  epochs run, epoch of best WER, wall
=====================  =========================================  ====================================

The device is chosen at run time (``trainer.accelerator=auto``): the same command runs on a GPU
unchanged, where 16-mixed is added and peak memory is ``torch.cuda.max_memory_allocated``. On CPU,
peak memory is the growth of the process's peak RSS over the evaluation (``VmHWM`` reset through
``/proc/self/clear_refs``; ``resource.getrusage`` ``ru_maxrss`` where that is not allowed), each
variant in a fresh spawned process with glibc's mmap threshold pinned, so that large tensors are
returned to the OS when freed and one variant's high-water mark cannot hide the next one's. The
evaluation decodes every utterance of the corpus (train + dev + test) with the model trained by
the early-stopping-off run.

Definitions: samples/s = train utterances / the shortest *training* time (validation excluded) of
epochs 2..N over all rounds (epoch 1 carries the start-up); epoch time = the shortest wall time of
epochs 2..N including validation; the minimum, not the mean, because on a shared machine other
processes only ever add time. Every comparison runs its own baseline right next to the variant
(``--rounds`` > 1: A B B A ...), so a drift in machine load hits both sides. padding % = padded
audio samples / all samples in the batches one epoch draws. Every training process uses
``--threads`` torch threads (default 1: on a shared 2-core machine, two intra-op threads per process
are often much slower than one). DDP's "1 process" is the single-process baseline.

Usage::

    python benchmarks/bench_speedups.py --help
    python benchmarks/bench_speedups.py --quick --out results/speedups       # 2-3.5 min on 2 cores
    python benchmarks/bench_speedups.py --out results/speedups               # full: ~15-30 min
    python benchmarks/bench_speedups.py --quick --only precision,batching    # a subset

Writes ``OUT/speedups.json`` (numbers + machine info), ``OUT/speedups.png``, ``OUT/logs/``; prints
the table.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from lightning.pytorch.callbacks import Callback

try:  # imported from the repo root or run as a script (benchmarks/ is then on sys.path)
    from benchmarks.common import (bench_parser, corpus_config, ensure_corpus, machine_info,
                                   print_footer, print_table, quiet, save_figure, silence,
                                   write_json)
except ImportError:
    from common import (bench_parser, corpus_config, ensure_corpus,  # type: ignore[no-redef]
                        machine_info, print_footer, print_table, quiet, save_figure, silence,
                        write_json)

QUICK = {"utterances": 150, "epochs": 3, "rounds": 1, "es_epochs": 8, "patience": 2, "eval_repeats": 2}
FULL = {"utterances": 600, "epochs": 4, "rounds": 2, "es_epochs": 30, "patience": 8, "eval_repeats": 3}
COMPARISONS = ("workers", "pin_memory", "precision", "ddp", "batching", "eval", "early_stopping")

MODEL = {
    "features.n_mels": 40, "model.d_model": 64, "model.num_layers": 2, "model.num_heads": 4,
    "model.ffn_mult": 2, "model.conv_kernel": 7, "optim.lr": 0.003, "optim.warmup_steps": 30,
    "data.batch_seconds": 30.0, "trainer.early_stopping_patience": 0, "trainer.progress_bar": False,
}


class EpochTimer(Callback):
    """Per-epoch wall time, validation time and val WER; rank 0 can dump them to ``dump`` (DDP)."""

    def __init__(self, dump: str | None = None) -> None:
        self.dump = dump
        self.epoch: list[float] = []
        self.val: list[float] = []
        self.wer: list[float] = []
        self._t0 = self._v0 = 0.0
        self._vsum = 0.0

    def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
        self._t0, self._vsum = time.perf_counter(), 0.0

    def on_validation_epoch_start(self, trainer: Any, module: Any) -> None:
        self._v0 = time.perf_counter()

    def on_validation_epoch_end(self, trainer: Any, module: Any) -> None:
        self._vsum += time.perf_counter() - self._v0

    def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
        self.epoch.append(time.perf_counter() - self._t0)
        self.val.append(self._vsum)
        w = trainer.callback_metrics.get("val_wer")
        self.wer.append(float(w) if w is not None else float("nan"))

    def on_train_end(self, trainer: Any, module: Any) -> None:
        if self.dump and trainer.is_global_zero:
            Path(self.dump).write_text(json.dumps({"epoch": self.epoch, "val": self.val, "wer": self.wer}))


@dataclass
class Run:
    """One configuration, trained once per round; steady-state numbers skip each round's epoch 1."""

    name: str
    n_train: int = 0
    rounds: list[dict[str, list[float]]] = field(default_factory=list)  # epoch_s, val_s, val_wer
    wall_s: list[float] = field(default_factory=list)
    error: str | None = None

    def _steady(self, key: Callable[[dict[str, list[float]]], list[float]]) -> float:
        tails = [x for r in self.rounds for x in (key(r)[1:] or key(r))]
        return min(tails) if tails else float("nan")

    @property
    def epoch_time(self) -> float:
        return self._steady(lambda r: r["epoch_s"])

    @property
    def train_time(self) -> float:
        return self._steady(lambda r: [e - v for e, v in zip(r["epoch_s"], r["val_s"])])

    @property
    def samples_per_s(self) -> float:
        t = self.train_time
        return self.n_train / t if t > 0 else float("nan")

    @property
    def val_wer(self) -> list[float]:
        return self.rounds[0]["val_wer"] if self.rounds else []

    @property
    def epochs_run(self) -> int:
        return len(self.val_wer)

    @property
    def best_epoch(self) -> int | None:
        ok = [(w, i) for i, w in enumerate(self.val_wer) if not math.isnan(w)]
        return min(ok)[1] + 1 if ok else None

    @property
    def best_wer(self) -> float:
        ok = [w for w in self.val_wer if not math.isnan(w)]
        return min(ok) if ok else float("nan")

    @property
    def wall(self) -> float:
        return min(self.wall_s) if self.wall_s else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "epoch_time": self.epoch_time, "train_time": self.train_time,
                "samples_per_s": self.samples_per_s, "epochs_run": self.epochs_run,
                "best_epoch": self.best_epoch, "best_wer": self.best_wer}


@contextlib.contextmanager
def env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def base_config(corpus: Path, epochs: int, threads: int, out: Path) -> Any:
    return corpus_config(corpus, MODEL, epochs, threads, {"trainer.output_dir": str(out / "work")})


# ---- training runs ------------------------------------------------------------------------------
def fit_once(run: Run, cfg: Any, log_dir: Path, save_to: Path | None = None, **trainer_kw: Any) -> None:
    """One in-process ``Trainer.fit`` (or a ``ddp_spawn`` launch) with an epoch timer; adds a round."""
    import lightning as L

    from asr_tune.training.run import make_trainer, prepare, standard_callbacks

    tag = f"{run.name.replace(' ', '_')}.r{len(run.rounds)}"
    start = time.perf_counter()
    try:
        with quiet(log_dir / f"{tag}.log"):
            L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
            prep = prepare(cfg)
            run.n_train = len(prep.datamodule.rows["train"] or [])
            dump = log_dir / f"{tag}.timer.json"
            dump.unlink(missing_ok=True)
            timer = EpochTimer(str(dump))
            trainer = make_trainer(cfg, standard_callbacks(cfg, None) + [timer], Path(cfg.trainer.output_dir) / tag,
                                   enable_checkpointing=False, enable_progress_bar=False, **trainer_kw)
            trainer.fit(prep.module, datamodule=prep.datamodule)
            if save_to is not None:
                trainer.save_checkpoint(str(save_to))
        run.wall_s.append(time.perf_counter() - start)
        rec = json.loads(dump.read_text())  # written by rank 0 (also after a spawn)
        run.rounds.append({"epoch_s": rec["epoch"], "val_s": rec["val"], "val_wer": rec["wer"]})
    except Exception as err:  # a variant that cannot run here (e.g. a precision) is a result too
        run.error = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
        (log_dir / f"{tag}.error.txt").write_text(traceback.format_exc())


def padding_stats(cfg: Any, bucketing: bool) -> dict[str, float]:
    """Padding fraction and batch count of one epoch's batches (the train sampler, epoch 0)."""
    from asr_tune.data.datamodule import BatchPlan, DurationBatchSampler
    from asr_tune.data.manifest import load_corpus

    durs = [u.duration for u in load_corpus(cfg.data.train) if u.duration <= cfg.data.max_duration]
    sampler = DurationBatchSampler(durs, BatchPlan(cfg.data.batch_seconds, cfg.data.batch_size, bucketing,
                                                   True, cfg.trainer.seed))
    batches = list(sampler)
    real = sum(durs[i] for b in batches for i in b)
    padded = sum(len(b) * max(durs[i] for i in b) for b in batches)
    return {"padding_pct": 100.0 * (1 - real / padded), "batches": float(len(batches)),
            "mean_batch_utts": len(durs) / len(batches)}


# ---- evaluation with / without inference_mode -----------------------------------------------------
def _proc_status_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _eval_worker(ckpt: str, manifest: str, mode: str, repeats: int, threads: int, device: str,
                 result_file: str) -> None:
    """In a fresh process: greedy decoding of ``manifest``; time and peak-memory growth."""
    torch.set_num_threads(threads)
    from asr_tune.data.datamodule import (DECODE_BATCH_SECONDS, BatchPlan, DurationBatchSampler, SpeechDataset,
                                          collate)
    from asr_tune.data.manifest import load_corpus
    from asr_tune.model.lightning_module import load_asr_checkpoint

    module = load_asr_checkpoint(ckpt).to(device).eval()
    rows = load_corpus(manifest)
    ds = SpeechDataset(rows, module.tok, module.cfg.data.sample_rate)
    sampler = DurationBatchSampler([r.duration for r in rows], BatchPlan(DECODE_BATCH_SECONDS, 0, True, False, 0))
    batches = [collate([ds[i] for i in idx]) for idx in sampler]  # audio decoded before timing
    ctx: Callable[[], Any] = {"grad": torch.enable_grad, "no_grad": torch.no_grad,
                              "inference_mode": torch.inference_mode}[mode]

    def one_pass() -> int:
        n = 0
        with ctx():
            for b in batches:
                n += len(module.transcribe(b["wav"].to(device), b["wav_lens"].to(device)))
        return n

    with ctx():  # warm-up on the shortest utterance
        n0 = int(batches[0]["wav_lens"][0])
        module.transcribe(batches[0]["wav"][:1, :n0].to(device), batches[0]["wav_lens"][:1].to(device))
    how = "cuda max_memory_allocated"
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.max_memory_allocated()
    elif _reset_peak_rss():
        how, base = "VmHWM - VmRSS (peak RSS reset)", _proc_status_kib("VmRSS") or 0
    else:
        how, base = "ru_maxrss growth", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    n = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = one_pass()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if device == "cuda":
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    elif how.startswith("VmHWM"):
        peak_mb = ((_proc_status_kib("VmHWM") or 0) - base) / 1024
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024  # KiB on Linux
    Path(result_file).write_text(json.dumps({"mode": mode, "time_s": min(times), "times": times, "utts": n,
                                             "batches": len(batches), "peak_mem_growth_mb": peak_mb,
                                             "memory_measure": how}))


def eval_run(ckpt: Path, manifest: str, mode: str, repeats: int, threads: int, device: str,
             work: Path) -> dict[str, Any]:
    """``_eval_worker`` in a spawned process; glibc's mmap threshold is pinned there so that large
    tensors come from (and go back to) the OS and the RSS peak follows the live tensors."""
    import multiprocessing as mp

    result = work / f"eval_{mode}.json"
    result.unlink(missing_ok=True)
    with env(MALLOC_MMAP_THRESHOLD_="131072", OMP_NUM_THREADS=str(threads)):
        proc = mp.get_context("spawn").Process(
            target=_eval_worker, args=(str(ckpt), manifest, mode, repeats, threads, device, str(result)))
        proc.start()
    proc.join()
    if proc.exitcode != 0 or not result.exists():
        return {"mode": mode, "error": f"worker exit code {proc.exitcode}"}
    return json.loads(result.read_text())


# ---- the table ----------------------------------------------------------------------------------
def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not a or (isinstance(a, float) and math.isnan(a)) or \
            (isinstance(b, float) and math.isnan(b)):
        return None
    return b / a


def row(comparison: str, a: str, b: str, metric: str, va: float | None, vb: float | None,
        note: str = "") -> dict[str, Any]:
    return {"comparison": comparison, "A": a, "B": b, "metric": metric, "A_value": va, "B_value": vb,
            "B/A": ratio(va, vb), "note": note}


def train_rows(comparison: str, base: Run, var: Run, note: str = "") -> list[dict[str, Any]]:
    a = base.name.split(" (")[0]
    if var.error or base.error:
        return [row(comparison, a, var.name, "error", None, None, var.error or base.error or "")]
    return [row(comparison, a, var.name, "samples/s", base.samples_per_s, var.samples_per_s, note),
            row(comparison, a, var.name, "epoch s", base.epoch_time, var.epoch_time)]


def plot(path: Path, rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r["B/A"] is not None and r["metric"] in
             ("samples/s", "time s", "peak mem MB", "padding %", "epochs run", "wall s")]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(shown) + 1.5))
    labels = [f"{r['comparison']}: {r['B']} vs {r['A']} ({r['metric']})" for r in shown]
    vals = [max(float(r["B/A"]), 1e-2) for r in shown]
    colors = ["tab:gray" if r["comparison"] == "noise" else
              "tab:green" if (v >= 1) == (r["metric"] == "samples/s") else "tab:red" for v, r in zip(vals, shown)]
    ax.barh(range(len(vals)), [v - 1 for v in vals], left=1.0, color=colors)  # bars grow from 1
    ax.set_xscale("log")
    ax.axvline(1.0, color="k", lw=0.8)
    for k, v in enumerate(vals):
        ax.text(v, k, f" {v:.2f} ", va="center", ha="left" if v >= 1 else "right", fontsize=7)
    ax.set_yticks(range(len(vals)), labels, fontsize=8)
    ax.invert_yaxis()
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.xaxis.set_major_locator(FixedLocator([0.125, 0.25, 0.5, 1, 2, 4, 8]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlim(min(vals + [0.8]) / 1.4, max(vals + [1.25]) * 1.4)
    ax.set_xlabel("ratio B / A, log scale\ngreen = better (more samples/s; less time, memory, padding, epochs)\n"
                  "gray = one baseline measured repeatedly: the noise band")
    ax.set_title("Lightning speed-ups for Conformer-CTC")
    save_figure(fig, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = bench_parser(__doc__, f"small settings {QUICK}; full: {FULL}", "results/speedups")
    p.add_argument("--epochs", type=int, help="epochs per throughput run (>= 2)")
    p.add_argument("--rounds", type=int, help="baseline/variant repetitions, ABBA order (min is kept)")
    p.add_argument("--es-epochs", type=int, help="max epochs of the early-stopping pair")
    p.add_argument("--patience", type=int, help="early-stopping patience (epochs)")
    p.add_argument("--num-workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="dataloader workers of the 'N workers' variant (default %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    p.add_argument("--only", default=",".join(COMPARISONS), help="comma list of: " + ", ".join(COMPARISONS))
    a = p.parse_args(argv)
    mode = QUICK if a.quick else FULL
    a.utterances = a.utterances or mode["utterances"]
    a.epochs = max(2, a.epochs or mode["epochs"])
    a.rounds = max(1, a.rounds or mode["rounds"])
    a.es_epochs = a.es_epochs or mode["es_epochs"]
    a.patience = a.patience or mode["patience"]
    a.eval_repeats = mode["eval_repeats"]
    a.only = [c.strip() for c in a.only.split(",") if c.strip()]
    unknown = set(a.only) - set(COMPARISONS)
    if unknown:
        p.error(f"--only: unknown comparison(s) {sorted(unknown)}; choose from {', '.join(COMPARISONS)}")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    logs = out / "logs"
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    silence(("lightning", "lightning.pytorch", "lightning.fabric", "asr_tune"))
    from asr_tune.training.run import resolve_accelerator

    load_before = os.getloadavg()
    t_all = time.perf_counter()
    corpus = ensure_corpus(Path(args.data), args.utterances, logs)
    cfg = base_config(corpus, args.epochs, args.threads, out)
    accelerator = resolve_accelerator(cfg)
    device = "cuda" if accelerator == "gpu" else "cpu"
    n_gpus = torch.cuda.device_count() if device == "cuda" else 0
    print(f"corpus {corpus}; device {device}; {args.epochs} epochs per run; threads/process {args.threads}",
          flush=True)

    rows: list[dict[str, Any]] = []
    runs: dict[str, Run] = {}
    extra: dict[str, Any] = {}

    def fit(name: str, c: Any, save_to: Path | None = None, **kw: Any) -> Run:
        r = runs.setdefault(name, Run(name))
        print(f"  {name} ...", end=" ", flush=True)
        fit_once(r, c, logs, save_to=save_to, **kw)
        print(f"{r.wall_s[-1]:.1f} s" if not r.error else f"failed ({r.error})", flush=True)
        return r

    def variant(**ov: Any) -> Any:
        return cfg.with_overrides({"trainer.precision": "32-true", **ov})

    def pair(comparison: str, name: str, ov: dict[str, Any], note: str = "", **kw: Any) -> Run:
        """Baseline and variant back to back, ABBA over rounds: load drifts hit both alike."""
        a_name = f"baseline ({comparison})"
        for k in range(args.rounds):
            for which in (("A", "B") if k % 2 == 0 else ("B", "A")):
                if which == "A":
                    fit(a_name, variant())
                else:
                    fit(name, variant(**ov), **kw)
        base_run, var_run = runs[a_name], runs[name]
        rows.extend(train_rows(comparison, base_run, var_run, note))
        return var_run

    if "workers" in args.only:
        pair("dataloader workers", f"num_workers={args.num_workers}", {"data.num_workers": args.num_workers},
             f"0 vs {args.num_workers} worker processes")
    if "pin_memory" in args.only:
        pair("pin_memory", "pin_memory on", {"data.pin_memory": True},
             "no effect expected without a GPU" if device == "cpu" else "")
    if "precision" in args.only:
        pair("precision", "bf16-mixed", {"trainer.precision": "bf16-mixed"},
             "autocast bf16" + (" on CPU" if device == "cpu" else ""))
        if device == "cuda":
            pair("precision", "16-mixed", {"trainer.precision": "16-mixed"}, "fp16 autocast + grad scaler")
    if "ddp" in args.only:
        if device == "cuda" and n_gpus < 2:
            rows.append(row("DDP", "1 process", "2 processes", "skipped", None, None,
                            f"needs 2 GPUs, found {n_gpus}"))
        else:
            dev_kw: dict[str, Any] = {"accelerator": "gpu" if device == "cuda" else "cpu", "devices": 2,
                                      "strategy": "ddp_spawn"}
            with env(OMP_NUM_THREADS=str(args.threads)):
                pair("DDP", "ddp_spawn x2", {}, f"Lightning ddp_spawn, {'nccl' if device == 'cuda' else 'gloo'}; "
                                                "samples/s is global", **dev_kw)
    if "batching" in args.only:
        pair("batching", "random batches", {"data.bucketing": False}, "bucketed vs random, same batch_seconds cap")
        pa, pb = padding_stats(cfg, True), padding_stats(cfg, False)
        extra["padding"] = {"bucketed": pa, "random": pb}
        rows.append(row("batching", "bucketed", "random", "padding %", pa["padding_pct"], pb["padding_pct"]))
        rows.append(row("batching", "bucketed", "random", "batches/epoch", pa["batches"], pb["batches"]))
    baselines = [r.samples_per_s for k, r in runs.items() if k.startswith("baseline (") and not r.error]
    if len(baselines) >= 2:  # the same configuration measured several times: the noise band
        rows.append(row("noise", "slowest baseline", "fastest baseline", "samples/s", min(baselines),
                        max(baselines), f"same config, {len(baselines)} runs: ratios inside this band are noise"))
    ckpt = work / "model_for_eval.ckpt"
    if "early_stopping" in args.only or "eval" in args.only:
        es_cfg = variant(**{"trainer.max_epochs": args.es_epochs})
        off = fit("early stopping off", es_cfg, save_to=ckpt)
        if "early_stopping" in args.only:
            on = fit(f"early stopping on (patience {args.patience})",
                     es_cfg.with_overrides({"trainer.early_stopping_patience": args.patience}))
            extra["early_stopping"] = {"off": off.to_dict(), "on": on.to_dict()}
            if off.error or on.error:
                rows.append(row("early stopping", off.name, on.name, "error", None, None, off.error or on.error or ""))
            else:
                rows += [row("early stopping", "off", "on", "epochs run", off.epochs_run, on.epochs_run,
                             f"max {args.es_epochs} epochs, monitor val_wer"),
                         row("early stopping", "off", "on", "epoch of best WER", off.best_epoch, on.best_epoch),
                         row("early stopping", "off", "on", "best val WER %", off.best_wer, on.best_wer),
                         row("early stopping", "off", "on", "wall s", off.wall, on.wall)]
    if "eval" in args.only:
        print("  evaluation grad / no_grad / inference_mode (fresh processes) ...", end=" ", flush=True)
        manifest = work / "eval_rows.jsonl"
        dev_test = [ln for s in ("train", "dev", "test")
                    for ln in (corpus / f"{s}.jsonl").read_text().splitlines() if ln]
        # manifests hold audio paths relative to their folder: write absolute ones
        fixed = []
        for ln in dev_test:
            d = json.loads(ln)
            d["audio_filepath"] = str((corpus / d["audio_filepath"]).resolve())
            fixed.append(json.dumps(d))
        manifest.write_text("\n".join(fixed) + "\n")
        if ckpt.exists():
            ev = {m: eval_run(ckpt, str(manifest), m, args.eval_repeats, args.threads, device, work)
                  for m in ("grad", "no_grad", "inference_mode")}
            extra["eval"] = ev
            g, i, ng = ev["grad"], ev["inference_mode"], ev["no_grad"]
            if "error" in g or "error" in i:
                rows.append(row("evaluation", "grad", "inference_mode", "error", None, None,
                                g.get("error") or i.get("error") or ""))
            else:
                mem = i.get("memory_measure", "")
                rows += [row("evaluation", "grad", "inference_mode", "time s", g["time_s"], i["time_s"],
                             f"{i['utts']} utts greedy decode"),
                         row("evaluation", "grad", "inference_mode", "peak mem MB", g["peak_mem_growth_mb"],
                             i["peak_mem_growth_mb"], mem)]
                if "error" not in ng:
                    rows += [row("evaluation", "grad", "no_grad", "time s", g["time_s"], ng["time_s"]),
                             row("evaluation", "grad", "no_grad", "peak mem MB", g["peak_mem_growth_mb"],
                                 ng["peak_mem_growth_mb"])]
            print("done", flush=True)
        else:
            rows.append(row("evaluation", "grad", "inference_mode", "error", None, None, "no model checkpoint"))

    n_train = max((r.n_train for r in runs.values()), default=0)
    info = machine_info()
    result = {"benchmark": "speedups", "mode": "quick" if args.quick else "full", "device": device,
              "settings": {"utterances": args.utterances, "epochs": args.epochs, "es_epochs": args.es_epochs,
                           "patience": args.patience, "num_workers": args.num_workers,
                           "threads_per_process": args.threads, "model": MODEL,
                           "n_train": n_train, "eval_repeats": args.eval_repeats, "rounds": args.rounds},
              "table": rows, "runs": {k: v.to_dict() for k, v in runs.items()}, **extra,
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
              "total_s": time.perf_counter() - t_all, "machine": info}
    write_json(out / "speedups.json", result)
    plot(out / "speedups.png", rows)
    print()
    print_table(rows, ["comparison", "A", "B", "metric", "A_value", "B_value", "B/A", "note"],
                title=f"Lightning speed-ups ({result['mode']}, {device}, {n_train} train utts, "
                      f"{args.epochs} epochs x {args.rounds} round(s) per run)")
    print_footer(info, load_before, result, out / "speedups.json", out / "speedups.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
