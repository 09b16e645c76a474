"""Loader throughput (from the feature cache and from audio) against the model's training-step rate.

Measured on the same batches of one config's training draw (augmentation as configured):

- ``loader_cache``: utterances/s of the training loader reading the on-disk log-mel cache;
- ``loader_audio``: the same loader with ``features.cache: false`` (decode FLAC, speed-perturb the
  waveform, log-mel, augment): the pre-cache path;
- ``step``: utterances/s of forward + backward + AdamW step of the config's model, and of the
  previous default FSDD model (d_model 96, 3 layers, x4 subsampling with d_model channels) and of
  this model with that previous subsampling, on the same batches;
- epoch time (loader and step run serially in the training process, ``num_workers: 0``) for
  before (audio loader + previous model) and after (cache + this model), and each factor alone.

Usage::

    python benchmarks/bench_pipeline.py --quick                       # ~2 min on 2 cores
    python benchmarks/bench_pipeline.py --config configs/fsdd_digits.yaml --batches 20
    # -> benchmarks/results/pipeline/{result.json,pipeline.png}
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, machine_line, print_table, save_figure, silence, write_json  # noqa: E402

PREVIOUS_SUBSAMPLING = {"model.subsampling": 4, "model.subsampling_channels": 0}
PREVIOUS_MODEL = {"model.d_model": 96, "model.num_layers": 3, "model.subsampling": 4,
                  "model.subsampling_channels": 0, "model.ffn_mult": 2}


def _loader_rate(cfg, n_batches: int) -> tuple[float, list[dict]]:
    from asr_tune.training.run import prepare

    prep = prepare(cfg)
    loader = prep.datamodule.train_dataloader()
    it = iter(loader)
    next(it)  # first batch pays the memory-map / worker start
    batches, utts, t0 = [], 0, time.perf_counter()
    for _ in range(n_batches):
        b = next(it)
        utts += len(b["texts"])
        batches.append(b)
    return utts / (time.perf_counter() - t0), batches


def _step_rate(cfg, batches: list[dict]) -> tuple[float, int]:
    import torch

    from asr_tune.training.run import prepare

    module = prepare(cfg).module.train()
    opt = torch.optim.AdamW(module.parameters(), lr=cfg.optim.lr)
    for b in batches[:1]:  # warm-up
        module._loss(b)[0].backward()
    utts, t0 = 0, time.perf_counter()
    for b in batches:
        opt.zero_grad()
        loss = module._loss(b)[0]
        loss.backward()
        opt.step()
        utts += len(b["texts"])
    return utts / (time.perf_counter() - t0), sum(p.numel() for p in module.model.parameters())


def main() -> int:
    p = __import__("argparse").ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/fsdd_digits.yaml")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="8 batches")
    p.add_argument("--out", default="benchmarks/results/pipeline")
    args = p.parse_args()
    silence(["lightning", "lightning.pytorch", "asr_tune"])
    import torch

    from asr_tune.config import load_config

    n = 8 if args.quick else args.batches
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    base = load_config(args.config, {"trainer.clean_steps": 0, "data.num_workers": 0})
    torch.set_num_threads(base.trainer.threads or torch.get_num_threads())
    cache_rate, batches = _loader_rate(base, n)
    audio_rate, _ = _loader_rate(base.with_overrides({"features.cache": False}), n)
    step_new, params_new = _step_rate(base, batches)
    step_old, params_old = _step_rate(base.with_overrides(PREVIOUS_MODEL), batches)
    step_sub, _ = _step_rate(base.with_overrides(PREVIOUS_SUBSAMPLING), batches)

    def epoch_s(loader: float, step: float, utts: int) -> float:
        return utts * (1 / loader + 1 / step)

    utts = sum(len(b["texts"]) for b in batches)
    per = {"before (audio + previous model)": epoch_s(audio_rate, step_old, utts),
           "cache + previous model": epoch_s(cache_rate, step_old, utts),
           "audio + this model": epoch_s(audio_rate, step_new, utts),
           "cache + this model, x4 / d_model-channel subsampling": epoch_s(cache_rate, step_sub, utts),
           "after (cache + this model)": epoch_s(cache_rate, step_new, utts)}
    before = per["before (audio + previous model)"]
    rows = [{"what": k, "s_per_batch": v / n, "speedup": before / v} for k, v in per.items()]
    result = {"machine": machine_info(), "config": args.config, "batches": n, "utterances": utts,
              "loader_cache_utts_per_s": cache_rate, "loader_audio_utts_per_s": audio_rate,
              "step_utts_per_s": step_new, "step_previous_model_utts_per_s": step_old,
              "step_previous_subsampling_utts_per_s": step_sub,
              "params": params_new, "params_previous_model": params_old,
              "loader_cache_over_step": cache_rate / step_new, "loader_audio_over_step": audio_rate / step_new,
              "epoch": rows, "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()),
              "total_s": time.perf_counter() - t_start}
    out = Path(args.out)
    write_json(out / "result.json", result)
    print(f"loader from cache {cache_rate:.0f} utt/s, from audio {audio_rate:.0f} utt/s; "
          f"training step {step_new:.1f} utt/s ({params_new / 1e6:.2f} M params), previous model "
          f"{step_old:.1f} utt/s ({params_old / 1e6:.2f} M)")
    print(f"loader / step: cache {cache_rate / step_new:.1f}x, audio {audio_rate / step_new:.1f}x")
    print_table(rows, ["what", "s_per_batch", "speedup"], title="epoch time (serial loader + step)")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 1.4]})
    a.bar(["loader\ncache", "loader\naudio", "step\nthis\nmodel", "step\nprevious\nmodel"],
          [cache_rate, audio_rate, step_new, step_old], color=["C0", "C1", "C2", "C3"])
    a.set_yscale("log")
    a.set_ylabel("utterances / s")
    b.barh([r["what"] for r in rows], [r["s_per_batch"] for r in rows], color="C0")
    b.set_xlabel("s per training batch")
    fig.suptitle(f"{args.config}: {machine_line(result['machine'])[:90]}", fontsize=8)
    save_figure(fig, out / "pipeline.png")
    print(f"machine: {machine_line(result['machine'])}; load {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"wrote {out / 'result.json'}, {out / 'pipeline.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
