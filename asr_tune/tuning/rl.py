"""REINFORCE controller over a discretised search space (neural architecture search with RL).

As in Zoph & Le, "Neural Architecture Search with Reinforcement Learning" (2017), a controller
samples a configuration, the trial's final metric is the reward, and the controller's policy is
updated with the REINFORCE policy gradient against a moving-average baseline. The controller here is
a factorised categorical policy: one softmax over candidate values per parameter (numpy logits).
Continuous parameters are discretised into ``bins`` values (log-spaced for ``loguniform``),
``quniform``/``randint`` use their grid (evenly thinned to ``bins`` points if larger) and ``choice``
uses its values. Conditional parameters (``when``) are sampled only when active and only active
parameters receive gradient.

Update for a finished trial with sampled indices ``a_k`` and reward ``r`` (``-metric`` for mode
``min``)::

    A = clip((r - b) / sqrt(v), -5, 5)      # advantage, normalised by a running deviation
    z_k += lr * (A * (onehot(a_k) - p_k) + entropy_coef * dH(p_k)/dz_k)
    b = decay * b + (1 - decay) * r          # moving-average baseline
    v = decay * v + (1 - decay) * (r - b)^2

Errored trials and results without a finite metric give no update. Sampling uses a seeded numpy
``Generator``, so a run is deterministic given the seed and the order of Tune's calls; the full
state (logits, baseline, RNG state, pending trials) round-trips through ``get_state``/``set_state``
and ``save``/``restore``.
"""
from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np
from ray.tune.search import Searcher

from asr_tune.config import ParamSpec
from asr_tune.tuning.space import conditional_order, is_active, quantized_bounds

_ADV_CLIP = 5.0
_STATE_VERSION = 1


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


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


class ReinforceSearcher(Searcher):
    """Ray Tune searcher driven by a REINFORCE-trained categorical controller.

    Args:
        space: the search space (``dict[str, ParamSpec]``); may instead come from Tune's
            ``param_space`` through ``set_search_properties``.
        metric, mode: what to optimise (``mode`` min -> reward = -metric).
        lr: policy-gradient step size on the logits.
        baseline_decay: decay of the moving-average reward baseline (and deviation), in [0, 1).
        entropy_coef: weight of the entropy bonus that keeps the policy exploring.
        bins: number of values a continuous parameter is discretised into.
        seed: seed of the sampling RNG.
        max_concurrent: at most this many unfinished suggestions (0 = unlimited).
    """

    def __init__(self, space: Mapping[str, ParamSpec] | None = None, metric: str | None = None,
                 mode: str | None = None, *, lr: float = 0.2, baseline_decay: float = 0.9,
                 entropy_coef: float = 0.01, bins: int = 8, seed: int | None = None,
                 max_concurrent: int = 0):
        super().__init__(metric=metric, mode=mode)
        self.lr = float(lr)
        self.baseline_decay = float(baseline_decay)
        self.entropy_coef = float(entropy_coef)
        self.bins = int(bins)
        self.max_concurrent = int(max_concurrent)
        self._rng = np.random.default_rng(seed)
        self._space: dict[str, ParamSpec] | None = None
        self._order: list[str] = []
        self._values: dict[str, list[Any]] = {}
        self._logits: dict[str, np.ndarray] = {}
        self._baseline: float | None = None
        self._variance = 0.0
        self._num_updates = 0
        self._pending: dict[str, dict[str, int]] = {}
        if space:
            self._setup(space)

    # ------------------------------------------------------------------ setup

    def _setup(self, space: Mapping[str, ParamSpec]) -> None:
        self._space = dict(space)
        self._order = conditional_order(self._space)
        self._values = {name: policy_values(spec, self.bins) for name, spec in self._space.items()}
        self._logits = {name: np.zeros(len(vals)) for name, vals in self._values.items()}

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        from ray.tune.search.variant_generator import parse_spec_vars

        _, domains, grids = parse_spec_vars(config or {})
        if self._space is not None and (domains or grids):
            return False
        if self._space is None:
            if grids:
                raise ValueError("ReinforceSearcher cannot take grid_search parameters")
            self._setup(_space_from_domains(domains))
        if metric and not self._metric:
            self._metric = metric
        if mode and not self._mode:
            self._mode = mode
        return True

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = int(max_concurrent)
        return True

    # ------------------------------------------------------------------ Searcher API

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._space is None:
            raise RuntimeError("ReinforceSearcher has no search space: pass `space` or a Tune "
                               "param_space")
        if not self._metric or not self._mode:
            raise RuntimeError("ReinforceSearcher needs `metric` and `mode` (constructor or "
                               "tune.TuneConfig)")
        if self.max_concurrent and len(self._pending) >= self.max_concurrent:
            return None
        choices: dict[str, int] = {}
        config: dict[str, Any] = {}
        for name in self._order:
            if not is_active(self._space[name], config):
                continue
            probs = _softmax(self._logits[name])
            idx = int(self._rng.choice(len(probs), p=probs))
            choices[name] = idx
            config[name] = self._values[name][idx]
        self._pending[trial_id] = choices
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Intermediate results are not used: the reward is the final metric."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        choices = self._pending.pop(trial_id, None)
        if choices is None:
            return
        reward = None if error else self._reward(result)
        if reward is not None:
            self._update(choices, reward)

    def _reward(self, result: dict | None) -> float | None:
        if not result or self._metric not in result:
            return None
        try:
            value = float(result[self._metric])
        except (TypeError, ValueError):
            return None
        if not math.isfinite(value):
            return None
        return -value if self._mode == "min" else value

    def _update(self, choices: dict[str, int], reward: float) -> None:
        if self._baseline is None:
            self._baseline = reward
        advantage = reward - self._baseline
        decay = self.baseline_decay
        self._variance = decay * self._variance + (1 - decay) * advantage ** 2
        scaled = advantage / math.sqrt(self._variance) if self._variance > 0 else 0.0
        scaled = float(np.clip(scaled, -_ADV_CLIP, _ADV_CLIP))
        for name, idx in choices.items():
            self._logits[name] = self._step(self._logits[name], idx, scaled)
        self._baseline = decay * self._baseline + (1 - decay) * reward
        self._num_updates += 1

    def _step(self, logits: np.ndarray, idx: int, advantage: float) -> np.ndarray:
        probs = _softmax(logits)
        grad = -probs * advantage
        grad[idx] += advantage
        log_p = np.log(np.maximum(probs, 1e-12))
        entropy = -float(np.sum(probs * log_p))
        grad += self.entropy_coef * (-probs * (log_p + entropy))
        new = logits + self.lr * grad
        return new - new.mean()

    # ------------------------------------------------------------------ introspection

    def probabilities(self, name: str) -> dict[Any, float]:
        """The controller's current distribution over ``name``'s candidate values."""
        probs = _softmax(self._logits[name])
        return {_key(v): float(p) for v, p in zip(self._values[name], probs)}

    def candidate_values(self, name: str) -> list[Any]:
        return list(self._values[name])

    def best_config(self) -> dict[str, Any]:
        """The most probable value of every active parameter."""
        config: dict[str, Any] = {}
        for name in self._order:
            if is_active(self._space[name], config):
                config[name] = self._values[name][int(np.argmax(self._logits[name]))]
        return config

    @property
    def num_updates(self) -> int:
        return self._num_updates

    @property
    def baseline(self) -> float | None:
        return self._baseline

    # ------------------------------------------------------------------ state

    def get_state(self) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "space": None if self._space is None
            else {k: v.model_dump() for k, v in self._space.items()},
            "metric": self._metric, "mode": self._mode,
            "options": {"lr": self.lr, "baseline_decay": self.baseline_decay,
                        "entropy_coef": self.entropy_coef, "bins": self.bins,
                        "max_concurrent": self.max_concurrent},
            "logits": {k: v.tolist() for k, v in self._logits.items()},
            "baseline": self._baseline, "variance": self._variance,
            "num_updates": self._num_updates,
            "pending": {k: dict(v) for k, v in self._pending.items()},
            "rng": self._rng.bit_generator.state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"unsupported ReinforceSearcher state version {state.get('version')}")
        for key, value in state["options"].items():
            setattr(self, key, value)
        self._metric, self._mode = state["metric"], state["mode"]
        if state["space"] is not None:
            self._setup({k: ParamSpec.model_validate(v) for k, v in state["space"].items()})
            self._logits = {k: np.asarray(v, dtype=float) for k, v in state["logits"].items()}
        self._baseline = state["baseline"]
        self._variance = state["variance"]
        self._num_updates = state["num_updates"]
        self._pending = {k: dict(v) for k, v in state["pending"].items()}
        self._rng = np.random.default_rng()
        self._rng.bit_generator.state = state["rng"]

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.get_state(), fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.set_state(pickle.load(fh))


def _key(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _space_from_domains(domains: list[tuple[tuple, Any]]) -> dict[str, ParamSpec]:
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
