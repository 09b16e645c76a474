"""Per-trial resources: ``ResourceConfig`` -> placement group / Ray Train scaling, and gang-safe
concurrency.

A single-worker trial reserves one bundle ``{CPU: c, GPU: g}`` through a ``PlacementGroupFactory``.
A DDP/FSDP trial is a small Tune driver (``DRIVER_CPU``) that launches a ``TorchTrainer`` whose
workers gang-schedule ``workers_per_trial`` bundles; concurrency is capped so every running trial's
whole gang fits the cluster at once (no deadlock of half-placed gangs).

Every trial report carries where it ran (:func:`where_am_i`): the Ray node id, the GPU ids Ray gave
the process (``ray.get_gpu_ids()``), ``CUDA_VISIBLE_DEVICES`` and the accelerator actually used; a
DDP/FSDP trial joins its ranks' values with ``/`` (:func:`merge_ranks`).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from asr_tune.config import ResourceConfig
from asr_tune.errors import SearchError

DRIVER_CPU = 0.1  # the Tune function that drives a multi-worker TorchTrainer does no compute
PLACEMENT_KEYS = ("ray_node_id", "gpu_ids", "cuda_visible_devices", "accelerator")


@dataclass(frozen=True)
class ClusterShape:
    total_cpu: float
    total_gpu: float
    max_node_cpu: float
    max_node_gpu: float

    @classmethod
    def from_ray(cls) -> "ClusterShape":
        import ray

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpus = [n["Resources"].get("CPU", 0.0) for n in nodes] or [0.0]
        gpus = [n["Resources"].get("GPU", 0.0) for n in nodes] or [0.0]
        return cls(sum(cpus), sum(gpus), max(cpus), max(gpus))


def trial_bundles(res: ResourceConfig) -> list[dict[str, float]]:
    """The bundles one trial needs (driver first for multi-worker trials)."""
    worker = {"CPU": res.cpus_per_worker}
    if res.gpus_per_worker:
        worker["GPU"] = res.gpus_per_worker
    if res.strategy == "single":
        return [worker]
    return [{"CPU": DRIVER_CPU}] + [dict(worker) for _ in range(res.workers_per_trial)]


def check_feasible(res: ResourceConfig, cluster: ClusterShape) -> None:
    """Raise (with the numbers) when one trial can never be placed on this cluster."""
    need_cpu = sum(b.get("CPU", 0) for b in trial_bundles(res))
    need_gpu = res.gpus_per_worker * res.workers_per_trial
    if res.gpus_per_worker > cluster.max_node_gpu:
        raise SearchError(
            f"resources.gpus_per_worker={res.gpus_per_worker:g} but the largest node has "
            f"{cluster.max_node_gpu:g} GPU(s); no worker can ever be placed")
    if need_gpu > cluster.total_gpu:
        raise SearchError(
            f"one trial needs {need_gpu:g} GPU(s) ({res.workers_per_trial} workers x "
            f"{res.gpus_per_worker:g}) but the cluster has {cluster.total_gpu:g}")
    if res.cpus_per_worker > cluster.max_node_cpu:
        raise SearchError(
            f"resources.cpus_per_worker={res.cpus_per_worker:g} but the largest node has "
            f"{cluster.max_node_cpu:g} CPU(s)")
    if need_cpu > cluster.total_cpu:
        raise SearchError(f"one trial needs {need_cpu:g} CPU(s) but the cluster has {cluster.total_cpu:g}")


def max_concurrent(res: ResourceConfig, cluster: ClusterShape) -> int:
    """How many trials' gangs fit at once (``max_concurrent_trials`` caps it further if set)."""
    need_cpu = sum(b.get("CPU", 0) for b in trial_bundles(res))
    fits = [math.floor(cluster.total_cpu / need_cpu + 1e-9)]
    if res.gpus_per_worker:
        fits.append(math.floor(cluster.total_gpu / (res.gpus_per_worker * res.workers_per_trial) + 1e-9))
    n = max(1, min(fits))
    return min(n, res.max_concurrent_trials) if res.max_concurrent_trials else n


def placement_group_factory(res: ResourceConfig):
    from ray.tune import PlacementGroupFactory

    if res.strategy == "single":
        return PlacementGroupFactory(trial_bundles(res), strategy="PACK")
    return PlacementGroupFactory([{"CPU": DRIVER_CPU}])  # the workers get their own gang


def scaling_config(res: ResourceConfig):
    from ray.train import ScalingConfig

    per_worker = {"CPU": res.cpus_per_worker}
    if res.gpus_per_worker:
        per_worker["GPU"] = res.gpus_per_worker
    return ScalingConfig(num_workers=res.workers_per_trial, use_gpu=res.gpus_per_worker > 0,
                         resources_per_worker=per_worker, placement_strategy="PACK")


def where_am_i(accelerator: str) -> dict[str, str]:
    """This process's placement and the accelerator it trains on, as strings (stored per result)."""
    import ray

    gpus = ray.get_gpu_ids()
    return {"ray_node_id": ray.get_runtime_context().get_node_id(),
            "gpu_ids": ",".join(str(g) for g in gpus),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "accelerator": accelerator}


def merge_ranks(per_rank: list[dict]) -> dict[str, str]:
    """One multi-worker report's placement: every rank's value, in rank order, joined by ``/``."""
    return {k: "/".join(str(m.get(k, "")) for m in per_rank) for k in PLACEMENT_KEYS
            if any(k in m for m in per_rank)}


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a CSV round trip turns "0" into 0.0
    return str(value)


def placement_columns(history: Any, last: dict, failures: int | None) -> dict[str, Any]:
    """Results-table columns: the last report's node/GPU ids, every distinct ``node:gpus`` the trial
    ran on in order (``a1b2c3d4:0>e5f6a7b8:1`` after a retry elsewhere), and its retry count."""
    seq: list[str] = []
    if history is not None and "ray_node_id" in history:
        gpus = history["gpu_ids"] if "gpu_ids" in history else [""] * len(history)
        for node, gpu in zip(history["ray_node_id"], gpus):
            where = "/".join(n[:8] for n in _text(node).split("/")) + ":" + _text(gpu)
            if where != ":" and (not seq or seq[-1] != where):
                seq.append(where)
    return {"node_id": _text(last.get("ray_node_id")), "gpu_ids": _text(last.get("gpu_ids")),
            "cuda_visible_devices": _text(last.get("cuda_visible_devices")),
            "accelerator": _text(last.get("accelerator")), "placements": ">".join(seq),
            "retries": failures if failures is not None else 0}


def trial_failures(grid: Any) -> dict[str, int]:
    """Trial id -> how many times Tune retried it (``FailureConfig``), from the grid's trials."""
    trials = getattr(getattr(grid, "_experiment_analysis", None), "trials", None) or []
    return {t.trial_id: int(t.run_metadata.num_failures) for t in trials}


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def torch_config(res: ResourceConfig):
    """Ray Train's ``TorchConfig``: ``gloo`` without GPUs; with GPUs, the backend is chosen on the
    workers themselves once they hold their GPU bundles: ``nccl`` where every worker sees a CUDA
    device, else ``gloo`` (declared GPUs without CUDA: the workers train on CPU)."""
    import dataclasses

    from ray.train.torch import TorchConfig
    from ray.train.torch.config import _TorchBackend

    if not res.gpus_per_worker:
        return TorchConfig(backend="gloo")

    class _WorkerChosenBackend(_TorchBackend):
        def on_start(self, worker_group: Any, backend_config: Any) -> None:
            cuda = all(worker_group.execute(_cuda_available))
            super().on_start(worker_group, dataclasses.replace(backend_config,
                                                               backend="nccl" if cuda else "gloo"))

    class _Config(TorchConfig):
        @property
        def backend_cls(self):  # noqa: ANN202 - Ray's own signature
            return _WorkerChosenBackend

    return _Config()
