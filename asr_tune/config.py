"""Typed experiment configuration: one ``ExperimentConfig`` shared by the CLI and the Python API.

Every hyperparameter is a field here; YAML files are loaded into these models with unknown keys
rejected (the key is named), wrong types rejected and impossible values rejected at load time.
A trial's config is the base config plus dotted-path overrides (``model.num_layers=4``), validated
again after they are applied.

Usage::

    from asr_tune.config import load_config
    cfg = load_config("configs/synth_tiny.yaml", overrides=["optim.lr=1e-3"])
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from asr_tune.errors import ConfigError
from asr_tune.space_spec import ParamSpec, ParamType, validate_space  # noqa: F401  (re-exported)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MixSource(_Strict):
    """An extra training corpus: each epoch draws ``len(train) * weight / data.train_weight`` of it."""

    path: str = Field(description="manifest or LibriSpeech split dir")
    weight: float = Field(gt=0, description="sampling weight relative to data.train_weight")


class DataConfig(_Strict):
    """Where the corpus lives and how it is batched."""

    train: str = Field("data/synth/train.jsonl", description="train manifest or LibriSpeech split dir")
    dev: str = "data/synth/dev.jsonl"
    test: str = "data/synth/test.jsonl"
    synth_if_missing: bool = Field(True, description="build the embedded synthetic corpus if absent")
    synth_utterances: int = Field(1200, ge=10)
    synth_seed: int = 0
    sample_rate: int = Field(16000, gt=0, description="model sample rate; audio is resampled to it")
    source_sample_rate: int = Field(0, ge=0, description="if > 0, audio at another rate is an error")
    max_duration: float = Field(20.0, gt=0, description="utterances longer than this are dropped")
    batch_seconds: float = Field(60.0, gt=0, description="audio seconds per batch (bucketed batching)")
    batch_size: int = Field(0, ge=0, description="fixed utterances per batch; 0 = use batch_seconds")
    bucketing: bool = True
    sortagrad: bool = Field(False, description="first epoch's batches shortest first (SortaGrad), then shuffled")
    num_workers: int = Field(0, ge=0)
    pin_memory: bool = False
    skip_bad_utterances: bool = False
    limit_train: int = Field(0, ge=0, description="use at most N train utterances (0 = all)")
    train_weight: float = Field(1.0, gt=0, description="sampling weight of data.train against data.train_mix")
    train_mix: list[MixSource] = Field(
        default_factory=list, description="extra training manifests mixed in by sampling weight")


class FeatureConfig(_Strict):
    n_mels: int = Field(80, ge=8, le=256)
    win_ms: float = Field(25.0, gt=0)
    hop_ms: float = Field(10.0, gt=0)
    normalize: Literal["utterance", "none"] = "utterance"
    top_db: float = Field(0.0, ge=0, description="floor each utterance's log-mels this many dB below its "
                          "loudest value (one floor depth for clean and noisy recordings); 0 = off")
    freq_masks: int = Field(2, ge=0)
    freq_mask_width: int = Field(15, ge=0)
    time_masks: int = Field(2, ge=0)
    time_mask_width: int = Field(20, ge=0)
    speed_perturb: list[float] = Field(default_factory=list, description="e.g. [0.9, 1.0, 1.1]")
    vtlp: float = Field(0.0, ge=0, lt=0.5, description="vocal-tract-length warp: factor in [1-v, 1+v]")
    noise_prob: float = Field(0.5, ge=0, le=1, description="share of training utterances given noise")
    noise_snr_db: float = Field(0.0, ge=0, description="lowest SNR of additive noise; 0 = no noise")
    noise_snr_span_db: float = Field(0.0, ge=0, description="SNR drawn from [snr, snr + span]")
    reverb_prob: float = Field(0.0, ge=0, le=1, description="share of training utterances reverberated")
    reverb_rt60_s: float = Field(0.5, gt=0, description="largest simulated reverberation time (s)")
    lowpass_prob: float = Field(0.0, ge=0, le=1, description="share of training utterances band-limited "
                                "(a microphone/channel losing the high band, e.g. the frication of /s/)")
    lowpass_db: float = Field(20.0, ge=0, description="largest attenuation at the top band (dB)")
    lowpass_min_hz: float = Field(1500.0, gt=0, description="lowest corner frequency of the roll-off (Hz)")
    cache: bool = Field(True, description="cache mel features on disk (per corpus, settings, speed)")
    cache_dir: str = Field("", description="feature cache folder; '' = .feature_cache beside each manifest")


class TokenizerConfig(_Strict):
    kind: Literal["char", "word", "sentencepiece"] = Field(
        "char", description="word = one token per word (small closed vocabularies, e.g. digits)")
    vocab_size: int = Field(64, ge=4, description="SentencePiece vocabulary size")
    model_type: Literal["unigram", "bpe"] = "unigram"


class ModelConfig(_Strict):
    d_model: int = Field(144, ge=8)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    ffn_mult: int = Field(4, ge=1)
    conv_kernel: int = Field(15, ge=3)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    subsampling: Literal[4, 8] = 4
    subsampling_channels: int = Field(0, ge=0, description="conv subsampling channels; 0 = d_model")

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by num_heads={self.num_heads}")
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel={self.conv_kernel} must be odd")
        return self


class OptimConfig(_Strict):
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0, le=1.0)
    weight_decay: float = Field(1e-3, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    schedule: Literal["warmup_cosine", "noam", "onecycle", "constant"] = "warmup_cosine"
    warmup_steps: int = Field(200, ge=0)
    min_lr_ratio: float = Field(0.05, ge=0, le=1)
    grad_accum: int = Field(1, ge=1)
    grad_clip: float = Field(5.0, ge=0, description="0 disables clipping")


class TrainerConfig(_Strict):
    max_epochs: int = Field(20, ge=1)
    max_steps: int = Field(-1, ge=-1)
    accelerator: Literal["auto", "cpu", "gpu", "cuda"] = "auto"
    devices: int = Field(1, ge=1)
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = "auto"
    early_stopping_patience: int = Field(5, ge=0, description="epochs without val_wer gain; 0 = off")
    seed: int = 0
    output_dir: str = "runs/train"
    log_every_n_steps: int = Field(10, ge=1)
    progress_bar: bool = True
    threads: int = Field(0, ge=0, description="torch intra-op threads; 0 = leave default")
    report_every_steps: int = Field(
        0, ge=0, description="validate + report every N optimizer steps (0 = once per epoch)")
    report_every_audio_s: float = Field(
        0.0, ge=0, description="or every this many seconds of training audio (0 = off)")
    clean_steps: int = Field(
        0, ge=0, description="first N optimizer steps without augmentation, SpecAugment or dropout")
    average_top_k: int = Field(
        0, ge=0, description="train: average the k best checkpoints' weights; kept if better on dev")

    @model_validator(mode="after")
    def _check_rounds(self) -> "TrainerConfig":
        if self.report_every_steps and self.report_every_audio_s:
            raise ValueError("set one of report_every_steps / report_every_audio_s, not both")
        if (self.report_every_steps or self.report_every_audio_s) and self.max_steps <= 0:
            raise ValueError("report_every_steps / report_every_audio_s count training in steps: "
                             "set trainer.max_steps > 0 (the training length)")
        return self


# One search dimension (``ParamSpec``, ``ParamType``) and the search space's checks live in the
# config layer's ``asr_tune.space_spec`` (imported above; a space is part of the config).


class ResourceConfig(_Strict):
    workers_per_trial: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    strategy: Literal["single", "ddp", "fsdp"] = "single"
    max_concurrent_trials: int = Field(0, ge=0, description="0 = derived so that gangs fit")

    @model_validator(mode="after")
    def _check(self) -> "ResourceConfig":
        if self.strategy == "single" and self.workers_per_trial != 1:
            raise ValueError("strategy 'single' needs workers_per_trial=1 (use ddp or fsdp)")
        return self


class SearchConfig(_Strict):
    searcher: str = "asha"
    num_samples: int = Field(8, ge=1)
    metric: Literal["val_wer", "val_loss"] = "val_wer"
    mode: Literal["min", "max"] = "min"
    seed: int = 0
    storage: str = "runs/search"
    name: str = ""
    max_failures: int = Field(1, ge=0)
    time_budget_s: float = Field(0.0, ge=0, description="0 = no wall-clock budget")
    space: dict[str, ParamSpec] = Field(default_factory=dict)
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-searcher typed options, e.g. options.asha.grace_period")
    evaluate_best_on_test: bool = True

    quantize_top_k: int = Field(0, ge=0, description="quantize the k best checkpoints at the end")


class QuantConfig(_Strict):
    mode: Literal["static", "dynamic"] = Field(
        "static", description="static = calibrated activation ranges (the default: smaller and faster "
        "than dynamic in the README's int8 table; both miss the 0.3x size / 0.6x latency targets); "
        "dynamic = ranges computed at run time")
    max_wer_delta: float = Field(0.3, ge=0, description="absolute WER points (0.3 = +0.3 %)")
    calib_utterances: int = Field(64, ge=1)
    keep_float: list[str] = Field(default_factory=list)
    auto_fallback: bool = True
    latency_repeats: int = Field(10, ge=1)
    threads: int = Field(0, ge=0, description="threads for the latency measurement; 0 = all cores")


class ExperimentConfig(_Strict):
    data: DataConfig = DataConfig()
    features: FeatureConfig = FeatureConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    trainer: TrainerConfig = TrainerConfig()
    resources: ResourceConfig = ResourceConfig()
    search: SearchConfig = SearchConfig()
    quant: QuantConfig = QuantConfig()

    @model_validator(mode="after")
    def _check_space(self) -> "ExperimentConfig":
        if self.search.space:  # keys must be real fields, conditions consistent (Ray-free check)
            try:
                validate_space(self.search.space, ExperimentConfig().to_dict())
            except ConfigError as err:
                raise ValueError(str(err)) from None
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def dump_yaml(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    def with_overrides(self, overrides: dict[str, Any], source: str = "overrides") -> "ExperimentConfig":
        """A new validated config with dotted-path ``overrides`` applied (the search trial path)."""
        raw = self.to_dict()
        for key, value in overrides.items():
            set_dotted(raw, key, value, source)
        return config_from_dict(raw, source)


def set_dotted(raw: dict[str, Any], key: str, value: Any, source: str = "overrides") -> None:
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{source}: unknown key '{'.'.join(parts[: i + 1])}' in '{key}'")
        node = node[part]
    if not isinstance(node, dict) or parts[-1] not in node:
        raise ConfigError(f"{source}: unknown key '{key}'")
    node[parts[-1]] = value


def get_dotted(cfg: ExperimentConfig | dict[str, Any], key: str) -> Any:
    node: Any = cfg.to_dict() if isinstance(cfg, ExperimentConfig) else cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"unknown key '{key}'")
        node = node[part]
    return node


def _format_validation(err: ValidationError, source: str) -> str:
    msgs = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after"))
        if e["type"] == "extra_forbidden":
            msgs.append(f"unknown key '{loc}'")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            msgs.append(f"'{loc}': {msg} (got {e.get('input')!r})" if loc else msg)
    return f"{source}: " + "; ".join(msgs)


def config_from_dict(raw: dict[str, Any], source: str = "config") -> ExperimentConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation(err, source)) from None


def parse_override(item: str) -> tuple[str, Any]:
    """``'optim.lr=1e-3'`` -> ``('optim.lr', 0.001)``; the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value")
    key, _, value = item.partition("=")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {item!r}: value is not valid YAML ({err})") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def load_yaml_file(path: str | Path, what: str = "config") -> dict[str, Any]:
    """A YAML mapping from ``path``: UTF-8, not empty (or only comments), no duplicate keys;
    every problem is one ``ConfigError`` naming the file and line."""
    from asr_tune.textfile import read_utf8

    p = Path(path)
    text = read_utf8(p, ConfigError)
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}:{where} invalid YAML ({getattr(err, 'problem', None) or err})") from None
    if raw is None:
        raise ConfigError(f"{p}: the {what} file is empty (or only comments); write the keys to change, "
                          "e.g. 'trainer: {max_epochs: 10}'")
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of {what} keys at the top level, got {type(raw).__name__}")
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None
                ) -> ExperimentConfig:
    """Load YAML (or defaults when ``path`` is None), apply overrides, validate; errors name the key."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        raw = load_yaml_file(p)
    cfg = config_from_dict(copy.deepcopy(raw), source)
    if overrides:
        items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides)
        cfg = cfg.with_overrides(dict(items), source=f"{source} (--set)")
    return cfg
