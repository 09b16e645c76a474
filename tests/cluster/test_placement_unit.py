"""Fast checks (no Ray cluster) of the per-trial placement pieces: the GPU feasibility check, DDP
GPU bundles, the CPU fallback on declared GPUs, the placement columns and the compact progress line.

Usage::

    .venv/bin/python -m pytest tests/cluster/test_placement_unit.py -q
"""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pandas as pd
import pytest

from asr_tune.config import ExperimentConfig, ResourceConfig
from asr_tune.errors import SearchError
from asr_tune.tuning import placement
from asr_tune.tuning.placement import ClusterShape, check_feasible, merge_ranks, placement_columns

TWO_WORKERS_TWO_GPUS = ClusterShape(total_cpu=5, total_gpu=4, max_node_cpu=2, max_node_gpu=2)


def test_more_gpus_than_any_node_fails_with_the_numbers() -> None:
    with pytest.raises(SearchError, match=r"gpus_per_worker=3 but the largest node has 2 GPU\(s\)"):
        check_feasible(ResourceConfig(gpus_per_worker=3), TWO_WORKERS_TWO_GPUS)
    ddp = ResourceConfig(strategy="ddp", workers_per_trial=5, gpus_per_worker=1, cpus_per_worker=0.5)
    with pytest.raises(SearchError, match=r"needs 5 GPU\(s\) \(5 workers x 1\) but the cluster has 4"):
        check_feasible(ddp, TWO_WORKERS_TWO_GPUS)
    check_feasible(ResourceConfig(gpus_per_worker=1), TWO_WORKERS_TWO_GPUS)  # fits: no error


def test_ddp_trial_gets_one_gpu_bundle_per_worker() -> None:
    ddp = ResourceConfig(strategy="ddp", workers_per_trial=2, gpus_per_worker=1, cpus_per_worker=1)
    bundles = placement.trial_bundles(ddp)
    assert bundles == [{"CPU": placement.DRIVER_CPU}, {"CPU": 1, "GPU": 1}, {"CPU": 1, "GPU": 1}]
    sc = placement.scaling_config(ddp)
    assert sc.num_workers == 2 and sc.use_gpu and sc.resources_per_worker == {"CPU": 1, "GPU": 1}
    assert placement.max_concurrent(ddp, TWO_WORKERS_TWO_GPUS) == 2  # 4 GPUs / 2 per trial


def test_declared_gpu_without_cuda_trains_on_cpu_and_says_so_once(monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    import torch

    from asr_tune.training import run

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(run, "_said_cpu_fallback", False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    on_gpu = ExperimentConfig().model_copy(update={"resources": ResourceConfig(gpus_per_worker=1)})
    with caplog.at_level(logging.WARNING, logger="asr_tune.training.run"):
        assert run.resolve_accelerator(ExperimentConfig()) == "cpu"
        assert not caplog.records  # no GPU declared: nothing to say
        assert [run.resolve_accelerator(on_gpu) for _ in range(3)] == ["cpu"] * 3
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "no CUDA device" in said[0] and "'1'" in said[0], said
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert run.resolve_accelerator(on_gpu) == "gpu"


def test_placement_columns_show_the_retry_on_another_node() -> None:
    a, b = "a" * 56, "b" * 56
    hist = pd.DataFrame({"ray_node_id": [a, a, b, b], "gpu_ids": [1.0, 1.0, 0.0, 0.0]})  # CSV-parsed ids
    cols = placement_columns(hist, {"ray_node_id": b, "gpu_ids": "0", "cuda_visible_devices": "0",
                                    "accelerator": "cpu"}, failures=1)
    assert cols["placements"] == "aaaaaaaa:1>bbbbbbbb:0"
    assert (cols["node_id"], cols["gpu_ids"], cols["retries"]) == (b, "0", 1)
    assert placement_columns(None, {}, None)["placements"] == ""


def test_ddp_ranks_are_joined_in_rank_order() -> None:
    ranks = [{"ray_node_id": "n1", "gpu_ids": "0", "val_wer": 3.0}, {"ray_node_id": "n2", "gpu_ids": "1"}]
    assert merge_ranks(ranks) == {"ray_node_id": "n1/n2", "gpu_ids": "0/1"}


def test_progress_line_fits_120_columns() -> None:
    from asr_tune.tuning.progress import WIDTH, report_line

    trials = [SimpleNamespace(status=s) for s in ("RUNNING",) * 3 + ("TERMINATED", "ERROR")]
    result = {"epoch": 7, "val_wer": 48.3125, "ray_node_id": "6874ac80" * 7, "gpu_ids": "1",
              "accelerator": "cpu"}
    line = report_line(42.4, "d6ff2_00003", result, "val_wer", 41.0, trials)
    assert line == ("[   42s] d6ff2_00003 ep   7 val_wer   48.31 best   41.00 node 6874ac80 gpu 1 cpu | "
                    "run 3 done 1 err 1")
    ddp = {**result, "ray_node_id": "a" * 56 + "/" + "b" * 56, "gpu_ids": "0/1", "accelerator": "cpu/cpu"}
    assert " node aaaaaaaa/bbbbbbbb gpu 0/1 cpu/cpu | " in report_line(1, "t", ddp, "val_wer", None, trials)
    long = report_line(1e6, "x" * 200, result, "val_wer", None, trials)
    assert len(long) == WIDTH


@pytest.mark.parametrize(("workers_see_cuda", "backend"), [([True, True], "nccl"), ([True, False], "gloo"),
                                                           ([False, False], "gloo")])
def test_ddp_backend_is_chosen_by_what_the_gpu_workers_see(monkeypatch: pytest.MonkeyPatch,
                                                           workers_see_cuda: list[bool], backend: str) -> None:
    """Declared GPUs without CUDA get gloo (nccl would fail); real CUDA on every worker gets nccl."""
    from ray.train.torch.config import _TorchBackend

    chosen: list[str] = []
    monkeypatch.setattr(_TorchBackend, "on_start", lambda self, wg, cfg: chosen.append(cfg.backend))
    cfg = placement.torch_config(ResourceConfig(strategy="ddp", workers_per_trial=2, gpus_per_worker=1))
    group = SimpleNamespace(execute=lambda fn: workers_see_cuda)
    cfg.backend_cls().on_start(group, cfg)
    assert chosen == [backend]
    assert placement.torch_config(ResourceConfig(strategy="ddp", workers_per_trial=2)).backend == "gloo"
