"""Typed config: YAML round trip, unknown keys / wrong types / impossible values named at load."""
from __future__ import annotations

from pathlib import Path

import pytest

from asr_tune.config import ExperimentConfig, load_config
from asr_tune.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    assert isinstance(load_config(path), ExperimentConfig)


def test_yaml_round_trip(tmp_path: Path) -> None:
    cfg = load_config(None, {"model.num_layers": 6, "optim.lr": 3e-4, "features.speed_perturb": [0.9, 1.1]})
    cfg.dump_yaml(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize("yaml_text, message", [
    ("model:\n  d_modle: 4\n", r"unknown key 'model.d_modle'"),
    ("modle:\n  d_model: 4\n", r"unknown key 'modle'"),
    ("optim:\n  lr: fast\n", r"'optim.lr': Input should be a valid number"),
    ("optim:\n  lr: -1\n", r"'optim.lr': .*greater than 0"),
    ("model:\n  d_model: 100\n  num_heads: 3\n", r"d_model=100 must be divisible by num_heads=3"),
    ("model:\n  conv_kernel: 8\n", r"conv_kernel=8 must be odd"),
    ("optim:\n  schedule: linear\n", r"'optim.schedule': .*'warmup_cosine'"),
    ("resources:\n  strategy: single\n  workers_per_trial: 2\n", r"needs workers_per_trial=1"),
    ("search:\n  space:\n    optim.lr: {type: loguniform, low: 0, high: 1}\n", r"loguniform needs low > 0"),
    ("search:\n  space:\n    optim.lr: {type: uniform, low: 2, high: 1}\n", r"low=2.0 must be < high=1.0"),
])
def test_bad_config_names_the_key(tmp_path: Path, yaml_text: str, message: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(p)
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_overrides_are_typed_and_checked() -> None:
    assert load_config(None, ["optim.lr=2e-3", "model.num_layers=6"]).model.num_layers == 6
    with pytest.raises(ConfigError, match=r"unknown key 'model.layers'"):
        load_config(None, ["model.layers=6"])
    with pytest.raises(ConfigError, match=r"expected key=value"):
        load_config(None, ["optim.lr"])


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    p = tmp_path / "broken.yaml"
    p.write_text("model:\n  d_model: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: line \d+ invalid YAML"):
        load_config(p)


def test_search_space_keys_checked_at_load(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("search:\n  space:\n    model.num_layer: {type: choice, values: [1, 2]}\n")
    with pytest.raises(ConfigError, match=r"s.yaml: .*unknown config key 'model.num_layer'"):
        load_config(p)
