"""Fixtures for the report/replay tests: one local Ray for the module (started here, stopped here)."""
from __future__ import annotations

import sys
from typing import Iterator

import pytest


@pytest.fixture(scope="module")
def ray_local(request: pytest.FixtureRequest) -> Iterator[object]:
    ray = pytest.importorskip("ray")
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[request.module.__name__])
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    if started:
        ray.shutdown()
