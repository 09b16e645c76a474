"""Search-space specs and their validation: the config layer's half of the search space (no Ray).

A search space is ``dict[str, ParamSpec]`` keyed by the dotted config path each parameter overrides
(``"optim.lr"``). This module holds what a parameter *is* and which values it can take, so that the
config can reject a bad space at load time without knowing Ray Tune; :mod:`asr_tune.tuning.space`
translates a valid space into Tune domains.

* :class:`ParamSpec` checks one parameter (bounds present and ordered, loguniform low > 0, ...).
* :func:`validate_space` checks the space as a whole against the config's fields (keys exist and
  name fields, integer bounds, a non-empty quantization grid, well-formed acyclic ``when``
  conditions); it raises ``ConfigError``.
* :func:`value_in_bounds`, :func:`quantized_values`, :func:`describe`, :func:`conditional_order`:
  the value-level helpers both layers use.
* :func:`trial_overrides` maps a trial's sampled config (as Tune records it in ``params.json``) back
  to the dotted overrides, so that reading an experiment folder needs no Ray.

Conventions (as in Ray Tune): ``randint`` is ``[low, high)`` (high exclusive); ``quniform`` takes
the multiples of ``q`` inside ``[low, high]``; ``grid`` enumerates every value.

Usage::

    from asr_tune.space_spec import ParamSpec, validate_space
    validate_space({"optim.lr": ParamSpec(type="loguniform", low=1e-4, high=1e-2)},
                   fields=ExperimentConfig().to_dict())
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from asr_tune.errors import ConfigError

LOG10_SUFFIX = "@log10"
"""Key suffix for a loguniform parameter that a searcher sees in log10 space (bayesopt, pb2)."""

CONTINUOUS = frozenset({"uniform", "loguniform"})
NUMERIC = frozenset({"uniform", "loguniform", "quniform", "randint"})
DISCRETE = frozenset({"quniform", "randint", "choice", "grid"})
MAX_GRID_POINTS = 10_000

_REL_TOL = 1e-9

INACTIVE = "<inactive>"
"""Value a conditional parameter takes in a trial config when its ``when`` condition is false."""

ParamType = Literal["uniform", "loguniform", "quniform", "randint", "choice", "grid"]


class ParamSpec(BaseModel):
    """One search dimension, keyed in ``search.space`` by the dotted config path it overrides."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    type: ParamType
    low: float | None = None
    high: float | None = None
    q: float | None = None
    values: list[Any] | None = None
    when: dict[str, list[Any]] | None = Field(
        None, description="conditional: only active when another dotted key takes one of these values")

    @model_validator(mode="after")
    def _check(self) -> "ParamSpec":
        if self.type in ("choice", "grid"):
            if not self.values:
                raise ValueError(f"type {self.type} needs a non-empty 'values' list")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"type {self.type} needs 'low' and 'high'")
            if not self.low < self.high:
                raise ValueError(f"low={self.low} must be < high={self.high}")
            if self.type == "loguniform" and self.low <= 0:
                raise ValueError("loguniform needs low > 0")
            if self.type == "quniform" and not self.q:
                raise ValueError("quniform needs q > 0")
        return self


# ----------------------------------------------------------------------------- space validation


def validate_space(space: Mapping[str, ParamSpec], fields: Mapping[str, Any]) -> None:
    """Check a search space on its own (independent of the searcher); raise ``ConfigError``.

    ``fields`` is the config as a nested dict (``ExperimentConfig().to_dict()``): every key of the
    space must name one of its fields.
    """
    for name, spec in space.items():
        _check_key(name, fields)
        _check_bounds(name, spec)
    for name, spec in space.items():
        if spec.when:
            _check_condition(name, spec, space)
    conditional_order(space)


def _check_key(name: str, fields: Mapping[str, Any]) -> None:
    if name.endswith(LOG10_SUFFIX) or name.startswith("_"):
        raise ConfigError(f"search.space: '{name}' is a reserved name")
    node: Any = fields
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"search.space: unknown config key '{name}'")
        node = node[part]
    if isinstance(node, dict):
        raise ConfigError(f"search.space: '{name}' is a config section, not a field")


def _check_bounds(name: str, spec: ParamSpec) -> None:
    where = f"search.space.{name}"
    if spec.type == "randint":
        if not (float(spec.low).is_integer() and float(spec.high).is_integer()):
            raise ConfigError(f"{where}: randint needs integer low/high (got {spec.low}, {spec.high})")
        if spec.high - spec.low < 1:
            raise ConfigError(f"{where}: randint [low, high) is empty")
    if spec.type == "quniform":
        count = len(quantized_values(spec, limit=MAX_GRID_POINTS + 1))
        if count == 0:
            raise ConfigError(f"{where}: no multiple of q={spec.q} lies in [{spec.low}, {spec.high}]")
    if spec.when and spec.type == "grid":
        raise ConfigError(f"{where}: a conditional parameter cannot be of type 'grid'; use 'choice'")


def _check_condition(name: str, spec: ParamSpec, space: Mapping[str, ParamSpec]) -> None:
    where = f"search.space.{name}.when"
    for parent, values in (spec.when or {}).items():
        if parent == name:
            raise ConfigError(f"{where}: a parameter cannot depend on itself")
        if parent not in space:
            raise ConfigError(f"{where}: '{parent}' is not a parameter of the search space")
        if not values:
            raise ConfigError(f"{where}.{parent}: needs at least one value")
        pspec = space[parent]
        if pspec.type in CONTINUOUS:
            raise ConfigError(f"{where}.{parent}: cannot condition on a continuous parameter "
                              f"(type {pspec.type}); use choice, grid, randint or quniform")
        for value in values:
            if not value_in_bounds(pspec, value):
                raise ConfigError(f"{where}.{parent}: {value!r} is not a value '{parent}' can take")


def conditional_order(space: Mapping[str, ParamSpec]) -> list[str]:
    """Parameter names with every ``when`` parent before its children; ``ConfigError`` on a cycle."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise ConfigError(f"search.space: conditional cycle {' -> '.join(path + (name,))}")
        state[name] = 1
        for parent in (space[name].when or {}):
            if parent in space:
                visit(parent, path + (name,))
        state[name] = 2
        order.append(name)

    for key in space:
        visit(key, ())
    return order


def conditional_names(space: Mapping[str, ParamSpec]) -> list[str]:
    return [name for name, spec in space.items() if spec.when]


def is_active(spec: ParamSpec, values: Mapping[str, Any]) -> bool:
    """Whether ``spec``'s ``when`` condition holds for the (already chosen) ``values``."""
    for parent, allowed in (spec.when or {}).items():
        value = values.get(parent, INACTIVE)
        if value == INACTIVE or not any(same_value(value, a) for a in allowed):
            return False
    return True


def same_value(a: Any, b: Any) -> bool:
    """Equality with a float tolerance (sampled floats vs. listed values)."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=_REL_TOL, abs_tol=1e-12)
    return bool(a == b)


# ----------------------------------------------------------------------------- values and grids


def grid_indices(spec: ParamSpec) -> tuple[int, int]:
    """The first and last ``k`` with ``k * q`` inside ``[low, high]`` (``quniform``)."""
    q = float(spec.q)
    return math.ceil(spec.low / q - _REL_TOL), math.floor(spec.high / q + _REL_TOL)


def quantized_values(spec: ParamSpec, limit: int = MAX_GRID_POINTS) -> list[float]:
    """The multiples of ``q`` in ``[low, high]`` (at most ``limit`` of them)."""
    first, last = grid_indices(spec)
    return [clean(k * spec.q) for k in range(first, min(last, first + limit - 1) + 1)]


def quantized_bounds(spec: ParamSpec) -> tuple[float, float]:
    """The smallest and largest multiple of ``q`` in ``[low, high]``."""
    first, last = grid_indices(spec)
    return clean(first * spec.q), clean(last * spec.q)


def clean(value: float) -> float:
    """``value`` rounded to 12 significant digits (``0.1 * 3`` -> ``0.3``)."""
    return float(f"{value:.12g}")


def value_in_bounds(spec: ParamSpec, value: Any) -> bool:
    """Whether ``value`` is one that ``spec`` can produce (with a small float tolerance)."""
    if spec.type in ("choice", "grid"):
        return any(same_value(value, v) for v in spec.values or [])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return False
    tol = _REL_TOL * max(abs(spec.low), abs(spec.high), 1e-12)
    if spec.type == "randint":
        return float(value).is_integer() and spec.low <= value < spec.high
    if not spec.low - tol <= value <= spec.high + tol:
        return False
    if spec.type == "quniform":
        steps = value / spec.q
        return math.isclose(steps, round(steps), rel_tol=1e-6, abs_tol=1e-6)
    return True


def describe(spec: ParamSpec) -> str:
    if spec.type in ("choice", "grid"):
        return f"{spec.type}{spec.values}"
    if spec.type == "quniform":
        return f"quniform[{spec.low}, {spec.high}] step {spec.q}"
    if spec.type == "randint":
        return f"randint[{int(spec.low)}, {int(spec.high)})"
    return f"{spec.type}[{spec.low}, {spec.high}]"


# ----------------------------------------------------------------------------- trial configs


def trial_overrides(trial_config: Mapping[str, Any],
                    space: Mapping[str, ParamSpec] | None = None) -> dict[str, Any]:
    """The dotted overrides a trial applies to the base config.

    Decodes ``name@log10`` keys, flattens nested groups (TPE's conditional encoding), drops
    :data:`INACTIVE` values and metadata keys starting with ``_``, converts numpy scalars to Python
    values. With ``space`` it also keeps only the space's keys and drops parameters whose ``when``
    condition does not hold for the trial.
    """
    flat: dict[str, Any] = {}
    _flatten_into(flat, trial_config)
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key.startswith("_") or _is_inactive(value):
            continue
        if key.endswith(LOG10_SUFFIX):
            key, value = key[: -len(LOG10_SUFFIX)], 10.0 ** float(value)
        out[key] = value
    if space is not None:
        out = _restrict(out, space)
    return out


def _flatten_into(out: dict[str, Any], mapping: Mapping[str, Any]) -> None:
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            _flatten_into(out, value)
        else:
            out[str(key)] = _native(value)


def _is_inactive(value: Any) -> bool:
    return isinstance(value, str) and value == INACTIVE


def _native(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_native(v) for v in value)
    return value


def _restrict(values: dict[str, Any], space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in conditional_order(space):
        spec = space[name]
        if name in values and is_active(spec, out):
            value = values[name]
            if spec.type == "loguniform" and isinstance(value, float):
                value = min(max(value, spec.low), spec.high)  # 10**log10(x) round-off
            if spec.type == "randint" and isinstance(value, float) and value.is_integer():
                value = int(value)
            out[name] = value
    return {name: out[name] for name in space if name in out}
