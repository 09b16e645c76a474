"""The REINFORCE controller's per-parameter policy spaces (see :mod:`asr_tune.tuning.rl`): which
parameters get a softmax over values and which a Gaussian on their [0, 1]-mapped range, the value
at a range position, and Tune domains -> ``ParamSpec``s."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from asr_tune.config import ParamSpec
from asr_tune.tuning.space import quantized_bounds


def policy_values(spec: ParamSpec, bins: int) -> list[Any]:
    """The candidate values the controller chooses between for one parameter."""
    if spec.type in ("choice", "grid"):
        return list(spec.values or [])
    if spec.type == "uniform":
        return [float(v) for v in np.linspace(spec.low, spec.high, bins)]
    if spec.type == "loguniform":
        return [float(v) for v in np.geomspace(spec.low, spec.high, bins)]
    if spec.type == "randint":
        first, last, step = int(spec.low), int(spec.high) - 1, 1.0
    else:
        low, high = quantized_bounds(spec)
        first, last, step = round(low / spec.q), round(high / spec.q), float(spec.q)
    if last - first + 1 <= bins:
        steps = list(range(first, last + 1))
    else:
        steps = [int(k) for k in np.unique(np.round(np.linspace(first, last, bins)).astype(int))]
    if spec.type == "randint":
        return steps
    return [float(f"{k * step:.12g}") for k in steps]


def is_gaussian(spec: ParamSpec, bins: int) -> bool:
    """Whether the controller samples ``spec`` from a Gaussian (else a softmax over its values)."""
    if spec.type in ("uniform", "loguniform"):
        return True
    if spec.type in ("randint", "quniform"):
        return len(_grid(spec)) > bins
    return False


def _grid(spec: ParamSpec) -> list[Any]:
    if spec.type == "randint":
        return list(range(int(spec.low), int(spec.high)))
    low, high = quantized_bounds(spec)
    return [float(f"{k * spec.q:.12g}") for k in range(round(low / spec.q), round(high / spec.q) + 1)]


def from_unit(spec: ParamSpec, u: float) -> Any:
    """A value of ``spec`` from a position ``u`` in [0, 1] of its range (log-scaled for loguniform)."""
    u = min(max(float(u), 0.0), 1.0)
    if spec.type == "uniform":
        return float(spec.low + u * (spec.high - spec.low))
    if spec.type == "loguniform":
        return float(math.exp(math.log(spec.low) + u * (math.log(spec.high) - math.log(spec.low))))
    grid = _grid(spec)
    return grid[min(int(round(u * (len(grid) - 1))), len(grid) - 1)]


def space_from_domains(domains: list[tuple[tuple, Any]]) -> dict[str, ParamSpec]:
    """Tune domains (from a ``param_space``) -> ``ParamSpec``s the controller can discretise."""
    from ray.tune.search.sample import Categorical, Float, Integer, LogUniform, Quantized, Uniform

    space: dict[str, ParamSpec] = {}
    for path, domain in domains:
        name = "/".join(str(p) for p in path)
        sampler = domain.get_sampler()
        q = sampler.q if isinstance(sampler, Quantized) else None
        inner = sampler.get_sampler() if isinstance(sampler, Quantized) else sampler
        if isinstance(domain, Categorical):
            space[name] = ParamSpec(type="choice", values=list(domain.categories))
        elif isinstance(domain, Integer) and q is None:
            space[name] = ParamSpec(type="randint", low=domain.lower, high=domain.upper)
        elif isinstance(domain, (Float, Integer)) and q is not None:
            space[name] = ParamSpec(type="quniform", low=domain.lower, high=domain.upper, q=q)
        elif isinstance(domain, Float) and isinstance(inner, (Uniform, LogUniform)):
            kind = "loguniform" if isinstance(inner, LogUniform) else "uniform"
            space[name] = ParamSpec(type=kind, low=domain.lower, high=domain.upper)
        else:
            raise ValueError(f"ReinforceSearcher cannot take parameter '{name}' ({domain})")
    return space
