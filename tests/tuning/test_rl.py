"""The REINFORCE searcher: state round trips, learning on a bandit, Searcher API edge cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from asr_tune.config import ParamSpec
from asr_tune.tuning.rl import ReinforceSearcher, policy_values

SPACE = {
    "optim.lr": ParamSpec(type="loguniform", low=1e-4, high=1e-1),
    "model.num_layers": ParamSpec(type="randint", low=2, high=7),
    "optim.optimizer": ParamSpec(type="choice", values=["adamw", "sgd"]),
    "optim.weight_decay": ParamSpec(type="uniform", low=0.0, high=0.1,
                                    when={"optim.optimizer": ["adamw"]}),
}


def _metric(config: dict) -> float:
    return (abs(math.log10(config["optim.lr"]) + 3) + 0.1 * abs(config["model.num_layers"] - 4)
            + (0.3 if config["optim.optimizer"] == "sgd" else 0.0))


def _controller(seed: int = 0, **kwargs) -> ReinforceSearcher:
    return ReinforceSearcher(SPACE, metric="val_wer", mode="min", seed=seed, lr=0.5, **kwargs)


def _drive(searcher: ReinforceSearcher, start: int, steps: int) -> list[dict]:
    """Suggest two at a time and complete the older one: keeps a trial pending across steps."""
    suggested = []
    for i in range(start, start + steps):
        config = searcher.suggest(f"t{i}")
        suggested.append(config)
        if i % 2 and len(suggested) >= 2:
            searcher.on_trial_complete(f"t{i - 1}", {"val_wer": _metric(suggested[-2])})
    return suggested


def _same_state(a: ReinforceSearcher, b: ReinforceSearcher) -> None:
    sa, sb = a.get_state(), b.get_state()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key] == sb[key], key


def test_save_restore_continues_identically(tmp_path):
    uninterrupted = _controller()
    first = _drive(uninterrupted, 0, 11)  # t10 is left pending
    interrupted = _controller()
    assert _drive(interrupted, 0, 11) == first
    interrupted.save(str(tmp_path / "rl.pkl"))

    restored = ReinforceSearcher(seed=123)  # a different seed and no space: all from the file
    restored.restore(str(tmp_path / "rl.pkl"))
    _same_state(restored, interrupted)
    assert "t10" in restored.get_state()["pending"]

    restored.on_trial_complete("t10", {"val_wer": _metric(first[-1])})
    uninterrupted.on_trial_complete("t10", {"val_wer": _metric(first[-1])})
    assert _drive(restored, 11, 20) == _drive(uninterrupted, 11, 20)
    _same_state(restored, uninterrupted)


def test_get_set_state_and_tune_dir_checkpoint(tmp_path):
    a = _controller(seed=3)
    _drive(a, 0, 7)
    b = ReinforceSearcher()
    b.set_state(a.get_state())
    assert b.suggest("x") == a.suggest("x")
    a.save_to_dir(str(tmp_path), session_str="s")
    c = ReinforceSearcher()
    c.restore_from_dir(str(tmp_path))
    _same_state(c, a)


def test_deterministic_given_seed_and_seed_matters():
    assert _drive(_controller(seed=1), 0, 12) == _drive(_controller(seed=1), 0, 12)
    assert _drive(_controller(seed=1), 0, 12) != _drive(_controller(seed=2), 0, 12)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_policy_concentrates_on_best_arm_of_a_bandit(mode):
    means = [0.50, 0.40, 0.30, 0.10, 0.35]  # arm 3 has the lowest expected metric
    best = 3 if mode == "min" else 0
    space = {"arm": ParamSpec(type="choice", values=list(range(5)))}
    searcher = ReinforceSearcher(space, metric="val_wer", mode=mode, seed=0, lr=0.2)
    rng = np.random.default_rng(0)
    picks = []
    for i in range(300):
        arm = searcher.suggest(f"t{i}")["arm"]
        picks.append(arm)
        searcher.on_trial_complete(f"t{i}", {"val_wer": means[arm] + rng.normal(0, 0.1)})
    probs = searcher.probabilities("arm")
    assert max(probs, key=probs.get) == best
    assert probs[best] > 0.8, probs
    assert picks[-50:].count(best) > picks[:50].count(best)
    assert searcher.best_config() == {"arm": best}


def test_entropy_bonus_keeps_the_policy_wider():
    space = {"arm": ParamSpec(type="choice", values=[0, 1, 2])}

    def train(entropy_coef: float) -> dict:
        s = ReinforceSearcher(space, metric="m", mode="max", seed=0, lr=0.1,
                              entropy_coef=entropy_coef)
        rng = np.random.default_rng(0)
        for i in range(200):
            arm = s.suggest(str(i))["arm"]
            s.on_trial_complete(str(i), {"m": [0.5, 0.45, 0.6][arm] + rng.normal(0, 0.1)})
        return s.probabilities("arm")

    def entropy(probs: dict) -> float:
        return -sum(p * math.log(p) for p in probs.values())

    greedy, exploring = train(0.0), train(0.5)
    assert max(greedy, key=greedy.get) == max(exploring, key=exploring.get) == 2
    assert entropy(exploring) > 2 * entropy(greedy), (greedy, exploring)


def test_errored_and_metricless_trials_give_no_update():
    s = _controller()
    for i, result in enumerate([None, {"other": 1.0}, {"val_wer": float("nan")},
                                {"val_wer": "n/a"}, {"val_wer": 0.3}]):
        s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", result, error=(i == 4))
    assert s.num_updates == 0 and s.baseline is None
    assert s.get_state()["pending"] == {}
    s.on_trial_complete("never-suggested", {"val_wer": 1.0})  # ignored
    s.suggest("ok")
    s.on_trial_complete("ok", {"val_wer": 0.2})
    assert s.num_updates == 1 and s.baseline == pytest.approx(-0.2)


def test_conditionals_only_sampled_and_updated_when_active():
    s = _controller(seed=4)
    before = s.get_state()["gauss"]["optim.weight_decay"]
    for i in range(40):
        config = s.suggest(f"t{i}")
        assert ("optim.weight_decay" in config) == (config["optim.optimizer"] == "adamw")
        if config["optim.optimizer"] == "sgd":
            wd = s.get_state()["gauss"]["optim.weight_decay"]
            s.on_trial_complete(f"t{i}", {"val_wer": _metric(config)})
            assert s.get_state()["gauss"]["optim.weight_decay"] == wd
        else:
            s.on_trial_complete(f"t{i}", {"val_wer": _metric(config)})
    assert s.get_state()["gauss"]["optim.weight_decay"] != before


def test_max_concurrent_and_missing_metric():
    s = _controller(max_concurrent=2)
    assert s.suggest("a") is not None and s.suggest("b") is not None
    assert s.suggest("c") is None
    s.on_trial_complete("a", {"val_wer": 1.0})
    assert s.suggest("c") is not None
    with pytest.raises(RuntimeError, match="metric"):
        ReinforceSearcher(SPACE, seed=0).suggest("x")
    with pytest.raises(RuntimeError, match="search space"):
        ReinforceSearcher(metric="m", mode="min").suggest("x")


def test_set_search_properties_from_tune_param_space():
    from ray import tune

    s = ReinforceSearcher(seed=0, bins=5)
    ok = s.set_search_properties("val_wer", "min", {
        "lr": tune.loguniform(1e-4, 1e-1), "opt": tune.choice(["a", "b"]),
        "layers": tune.randint(2, 6), "wd": tune.quniform(0.0, 0.1, 0.025), "const": 3})
    assert ok and s.metric == "val_wer" and s.mode == "min"
    config = s.suggest("t")
    assert set(config) == {"lr", "opt", "layers", "wd"}
    assert s.candidate_values("lr") is None  # continuous: a Gaussian policy, not bins
    assert 1e-4 <= config["lr"] <= 1e-1
    assert s.candidate_values("layers") == [2, 3, 4, 5]
    assert s.candidate_values("wd") == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1])
    # a searcher with its own space refuses a second one (Tune then reports the clash)
    assert not _controller().set_search_properties("m", "min", {"x": tune.uniform(0, 1)})
    assert _controller().set_search_properties("m", "min", {"const": 1})


def test_policy_values_discretisation():
    assert policy_values(ParamSpec(type="uniform", low=0, high=1), 5) == pytest.approx(
        [0, 0.25, 0.5, 0.75, 1])
    assert policy_values(ParamSpec(type="loguniform", low=1e-4, high=1), 5) == pytest.approx(
        [1e-4, 1e-3, 1e-2, 1e-1, 1])
    assert policy_values(ParamSpec(type="randint", low=0, high=100), 5) == [0, 25, 50, 74, 99]
    assert policy_values(ParamSpec(type="quniform", low=0, high=1, q=0.5), 8) == [0, 0.5, 1]
    assert policy_values(ParamSpec(type="choice", values=["a", [1, 2]]), 8) == ["a", [1, 2]]


# ---- issue 11 item 4: the controller's reward statistics, penalties, best-result reward, continuous


def _two_arms(**kw) -> ReinforceSearcher:
    return ReinforceSearcher({"arm": ParamSpec(type="choice", values=[0, 1])}, metric="m", mode="max",
                             seed=0, lr=0.5, entropy_coef=0.0, **kw)


def _complete(s: ReinforceSearcher, tid: str, value: float) -> dict:
    config = s.suggest(tid)
    s.on_trial_complete(tid, {"m": value})
    return config


def test_reward_deviation_is_seeded_from_the_first_rewards():
    # old: the second update was a fixed +-3.16 * lr step however close the two rewards were
    s = _two_arms()
    _complete(s, "a", 10.0)
    _complete(s, "b", 10.0 + 1e-6)
    assert all(p == pytest.approx(0.5, abs=1e-3) for p in s.probabilities("arm").values())
    # from the third reward on: A = (r - mean) / std of the rewards so far (10, 10+1e-6, then 12...)
    s = _two_arms()
    _complete(s, "a", 10.0)
    _complete(s, "b", 12.0)
    _complete(s, "c", 11.0)  # the mean: no step
    assert all(p == pytest.approx(0.5) for p in s.probabilities("arm").values())
    mean, std = 11.0, 1.0  # of 10, 12, 11
    arm = _complete(s, "d", 13.0)["arm"]
    z = s.get_state()["logits"]["arm"]
    assert z[arm] - z[1 - arm] == pytest.approx(0.5 * (13.0 - mean) / std)


@pytest.mark.parametrize("outcome", ["error", "nan", "no metric"])
def test_errored_or_metricless_trials_are_penalised(outcome):
    s = ReinforceSearcher({"arm": ParamSpec(type="choice", values=[0, 1, 2])}, metric="m", mode="max",
                          seed=0, lr=0.5, entropy_coef=0.0)
    for i, r in enumerate([1.0, 2.0, 1.5]):
        _complete(s, f"t{i}", r)
    before = s.probabilities("arm")
    arm = s.suggest("bad")["arm"]
    result = {"error": None, "nan": {"m": float("nan")}, "no metric": {"other": 1.0}}[outcome]
    s.on_trial_complete("bad", result, error=outcome == "error")
    after = s.probabilities("arm")
    assert after[arm] < before[arm] - 0.05
    assert s.num_updates == 3  # a penalty is not a reward: the statistics stay the rewards'


def test_reward_is_the_trials_best_result_not_its_last():
    def run(results: list[float]) -> list[float]:
        s = ReinforceSearcher({"arm": ParamSpec(type="choice", values=[0, 1, 2])}, metric="val_wer",
                              mode="min", seed=0, lr=0.5)
        for i, r in enumerate([0.5, 0.7, 0.6]):
            s.suggest(f"w{i}")
            s.on_trial_complete(f"w{i}", {"val_wer": r})
        s.suggest("t")
        for r in results[:-1]:
            s.on_trial_result("t", {"val_wer": r})
        s.on_trial_complete("t", {"val_wer": results[-1]})
        return s.get_state()["logits"]["arm"]

    assert run([0.9, 0.1, 0.8]) == pytest.approx(run([0.1]))  # best (lowest) WER 0.1 is the reward
    assert run([0.9, 0.1, 0.8]) != pytest.approx(run([0.8]))


def test_continuous_parameter_settles_between_the_old_bins():
    opt = -3.357  # log10 lr, midway between two of the old 8 log-spaced bins over [1e-4, 1e-1]
    old_bins = np.log10(np.geomspace(1e-4, 1e-1, 8))
    assert np.min(np.abs(old_bins - opt)) > 0.2
    s = ReinforceSearcher({"optim.lr": ParamSpec(type="loguniform", low=1e-4, high=1e-1)},
                          metric="val_wer", mode="min", seed=0, lr=0.2)
    rng = np.random.default_rng(0)
    seen = []
    for i in range(300):
        lr = s.suggest(f"t{i}")["optim.lr"]
        seen.append(lr)
        assert 1e-4 <= lr <= 1e-1
        s.on_trial_complete(f"t{i}", {"val_wer": (math.log10(lr) - opt) ** 2 + rng.normal(0, 0.002)})
    assert abs(math.log10(s.best_config()["optim.lr"]) - opt) < 0.1
    assert len(set(seen)) > 100  # any value of the range, not 8
    assert s.distribution("optim.lr")["sigma"] < 0.1  # and it has narrowed down
