"""REINFORCE controller over a search space (neural architecture search with RL).

As in Zoph & Le, "Neural Architecture Search with Reinforcement Learning" (2017), a controller
samples a configuration, the trial's metric is the reward, and the controller's policy is updated with
the REINFORCE policy gradient against a baseline. The policy is factorised, one distribution per
parameter (numpy):

- ``choice``, and ``quniform``/``randint`` grids of at most ``bins`` values: a softmax over the
  values (logits ``z``);
- ``uniform``/``loguniform`` and larger grids: a Gaussian ``N(mu, sigma)`` on the parameter's range
  mapped to [0, 1] (log-scaled for ``loguniform``), clipped to the range and rounded to the grid
  where there is one, so the controller can settle between any two values (not on 8 fixed bins).

Conditional parameters (``when``) are sampled only when active and only active ones get gradient.

Reward ``r`` of a finished trial = its *best* reported metric (``-metric`` for mode ``min``), not its
last. The baseline ``b`` and deviation ``s`` are the mean and standard deviation of the rewards seen
so far (exact for the first ``1 / (1 - baseline_decay)`` rewards, exponential moving ones after), so
they are seeded from the first rewards: a trial updates the policy once two rewards are known::

    A = clip((r - b) / s, -5, 5)
    z_k  += lr * (A * (onehot(a_k) - p_k) + entropy_coef * dH(p_k)/dz_k)        # categorical
    mu   += clip(lr * A, -1, 1) * (x - mu)                                      # Gaussian
    log sigma += clip(lr * A * ((x - mu)^2 / sigma^2 - 1) / 2, -0.5, 0.5) + lr * entropy_coef

A trial that errors, or finishes without a finite metric, is penalised like one scoring one
deviation below the worst reward seen. Sampling uses a seeded numpy ``Generator``, so a run is
deterministic given the seed and the order of Tune's calls; the full state (policy, reward
statistics, RNG state, pending trials and their best results) round-trips through
``get_state``/``set_state`` and ``save``/``restore``.
"""
from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np
from ray.tune.search import Searcher

from asr_tune.config import ParamSpec
from asr_tune.tuning.rl_policy import (  # policy_values re-exported
    from_unit, is_gaussian, policy_values, space_from_domains)
from asr_tune.tuning.space import conditional_order, is_active

__all__ = ["ReinforceSearcher", "is_gaussian", "policy_values"]

_ADV_CLIP = 5.0
_STATE_VERSION = 2
_SIGMA0, _SIGMA_MIN, _SIGMA_MAX = 0.3, 0.02, 0.5  # Gaussian policy widths on the [0, 1] range


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


class ReinforceSearcher(Searcher):
    """Ray Tune searcher driven by a REINFORCE-trained controller (see the module docstring).

    Args:
        space: the search space (``dict[str, ParamSpec]``); may instead come from Tune's
            ``param_space`` through ``set_search_properties``.
        metric, mode: what to optimise (``mode`` min -> reward = -metric).
        lr: policy-gradient step size.
        baseline_decay: decay of the moving reward mean/deviation, in [0, 1); the first
            ``1 / (1 - decay)`` rewards are averaged exactly.
        entropy_coef: weight of the entropy bonus that keeps the policy exploring.
        bins: a ``randint``/``quniform`` grid with more values than this gets a Gaussian policy.
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
        self._gauss: dict[str, np.ndarray] = {}  # name -> [mu, log_sigma] on the unit range
        self._baseline: float | None = None
        self._m2 = 0.0  # sum of squared deviations (exact phase) -> variance = m2 / (n - 1)
        self._variance = 0.0
        self._worst: float | None = None
        self._num_updates = 0  # rewards seen
        self._pending: dict[str, dict[str, float]] = {}
        self._best_seen: dict[str, float] = {}  # best reward reported so far, per unfinished trial
        if space:
            self._setup(space)

    # ------------------------------------------------------------------ setup

    def _setup(self, space: Mapping[str, ParamSpec]) -> None:
        self._space = dict(space)
        self._order = conditional_order(self._space)
        self._values, self._logits, self._gauss = {}, {}, {}
        for name, spec in self._space.items():
            if is_gaussian(spec, self.bins):
                self._gauss[name] = np.array([0.5, math.log(_SIGMA0)])
            else:
                self._values[name] = policy_values(spec, self.bins)
                self._logits[name] = np.zeros(len(self._values[name]))

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        from ray.tune.search.variant_generator import parse_spec_vars

        _, domains, grids = parse_spec_vars(config or {})
        if self._space is not None and (domains or grids):
            return False
        if self._space is None:
            if grids:
                raise ValueError("ReinforceSearcher cannot take grid_search parameters")
            self._setup(space_from_domains(domains))
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
        choices: dict[str, float] = {}
        config: dict[str, Any] = {}
        for name in self._order:
            spec = self._space[name]
            if not is_active(spec, config):
                continue
            if name in self._gauss:
                mu, log_sigma = self._gauss[name]
                x = float(self._rng.normal(mu, math.exp(log_sigma)))
                choices[name] = x
                config[name] = from_unit(spec, x)
            else:
                probs = _softmax(self._logits[name])
                idx = int(self._rng.choice(len(probs), p=probs))
                choices[name] = idx
                config[name] = self._values[name][idx]
        self._pending[trial_id] = choices
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Remember the trial's best reward so far: its reward is its best result, not its last."""
        reward = self._reward(result)
        if trial_id in self._pending and reward is not None:
            self._best_seen[trial_id] = max(reward, self._best_seen.get(trial_id, -math.inf))

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        choices = self._pending.pop(trial_id, None)
        best = self._best_seen.pop(trial_id, None)
        if choices is None:
            return
        final = None if error else self._reward(result)
        seen = [r for r in (best, final) if r is not None]
        if error or not seen:
            self._penalise(choices)
        else:
            self._update(choices, max(seen))

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

    # ------------------------------------------------------------------ learning

    def _deviation(self) -> float:
        return math.sqrt(self._variance) if self._variance > 0 else 0.0

    def _update(self, choices: dict[str, float], reward: float) -> None:
        if self._num_updates >= 2 and self._deviation() > 0:
            self._apply(choices, (reward - self._baseline) / self._deviation())
        self._observe(reward)

    def _penalise(self, choices: dict[str, float]) -> None:
        """An errored (or metric-less) trial counts as one deviation below the worst reward."""
        if self._num_updates >= 2 and self._deviation() > 0:
            penalty = self._worst - self._deviation()
            self._apply(choices, (penalty - self._baseline) / self._deviation())

    def _observe(self, reward: float) -> None:
        """Fold ``reward`` into the baseline and deviation: exact mean/variance of the first
        ``1 / (1 - decay)`` rewards, exponential moving ones after."""
        n = self._num_updates + 1
        window = max(2, round(1.0 / (1.0 - self.baseline_decay)))
        if self._baseline is None:
            self._baseline, self._m2, self._variance = reward, 0.0, 0.0
        elif n <= window:
            delta = reward - self._baseline
            self._baseline += delta / n
            self._m2 += delta * (reward - self._baseline)
            self._variance = self._m2 / (n - 1)
        else:
            d = self.baseline_decay
            delta = reward - self._baseline
            self._baseline += (1 - d) * delta
            self._variance = d * (self._variance + (1 - d) * delta ** 2)
        self._worst = reward if self._worst is None else min(self._worst, reward)
        self._num_updates = n

    def _apply(self, choices: dict[str, float], advantage: float) -> None:
        scaled = float(np.clip(advantage, -_ADV_CLIP, _ADV_CLIP))
        for name, choice in choices.items():
            if name in self._gauss:
                self._gauss[name] = self._gauss_step(self._gauss[name], float(choice), scaled)
            else:
                self._logits[name] = self._step(self._logits[name], int(choice), scaled)

    def _step(self, logits: np.ndarray, idx: int, advantage: float) -> np.ndarray:
        probs = _softmax(logits)
        grad = -probs * advantage
        grad[idx] += advantage
        log_p = np.log(np.maximum(probs, 1e-12))
        entropy = -float(np.sum(probs * log_p))
        grad += self.entropy_coef * (-probs * (log_p + entropy))
        new = logits + self.lr * grad
        return new - new.mean()

    def _gauss_step(self, params: np.ndarray, x: float, advantage: float) -> np.ndarray:
        """Natural-gradient REINFORCE step of a Gaussian (the mean moves by lr * A * (x - mu))."""
        mu, log_sigma = float(params[0]), float(params[1])
        z2 = (x - mu) ** 2 / math.exp(2 * log_sigma)
        # a step never carries the mean past the sample (or as far the other way), nor changes the
        # width by more than a factor e^0.5: large lr * A would overshoot
        mu = min(max(mu + float(np.clip(self.lr * advantage, -1.0, 1.0)) * (x - mu), 0.0), 1.0)
        log_sigma += float(np.clip(self.lr * 0.5 * advantage * (z2 - 1.0), -0.5, 0.5))
        log_sigma += self.lr * self.entropy_coef
        return np.array([mu, min(max(log_sigma, math.log(_SIGMA_MIN)), math.log(_SIGMA_MAX))])

    # ------------------------------------------------------------------ introspection

    def probabilities(self, name: str) -> dict[Any, float]:
        """The controller's current distribution over a categorical parameter's values."""
        if name in self._gauss:
            raise ValueError(f"'{name}' has a Gaussian policy; see distribution()")
        probs = _softmax(self._logits[name])
        return {_key(v): float(p) for v, p in zip(self._values[name], probs)}

    def distribution(self, name: str) -> dict[str, float]:
        """A Gaussian parameter's policy: ``mean`` (a value of the parameter), and ``mu``/``sigma``
        on its unit range."""
        mu, log_sigma = self._gauss[name]
        return {"mean": from_unit(self._space[name], mu), "mu": float(mu), "sigma": math.exp(log_sigma)}

    def candidate_values(self, name: str) -> list[Any] | None:
        """A categorical parameter's values (None for a Gaussian one: any value in its range)."""
        return None if name in self._gauss else list(self._values[name])

    def best_config(self) -> dict[str, Any]:
        """The most probable value of every active parameter (the mean of a Gaussian one)."""
        config: dict[str, Any] = {}
        for name in self._order:
            spec = self._space[name]
            if not is_active(spec, config):
                continue
            if name in self._gauss:
                config[name] = from_unit(spec, self._gauss[name][0])
            else:
                config[name] = self._values[name][int(np.argmax(self._logits[name]))]
        return config

    @property
    def num_updates(self) -> int:
        """Rewards received (the policy itself moves from the third on)."""
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
            "gauss": {k: v.tolist() for k, v in self._gauss.items()},
            "baseline": self._baseline, "m2": self._m2, "variance": self._variance,
            "worst": self._worst, "num_updates": self._num_updates,
            "pending": {k: dict(v) for k, v in self._pending.items()},
            "best_seen": dict(self._best_seen),
            "rng": self._rng.bit_generator.state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"unsupported ReinforceSearcher state version {state.get('version')} "
                             f"(this version reads {_STATE_VERSION})")
        for key, value in state["options"].items():
            setattr(self, key, value)
        self._metric, self._mode = state["metric"], state["mode"]
        if state["space"] is not None:
            self._setup({k: ParamSpec.model_validate(v) for k, v in state["space"].items()})
            self._logits = {k: np.asarray(v, dtype=float) for k, v in state["logits"].items()}
            self._gauss = {k: np.asarray(v, dtype=float) for k, v in state["gauss"].items()}
        self._baseline = state["baseline"]
        self._m2 = state["m2"]
        self._variance = state["variance"]
        self._worst = state["worst"]
        self._num_updates = state["num_updates"]
        self._pending = {k: dict(v) for k, v in state["pending"].items()}
        self._best_seen = dict(state["best_seen"])
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
