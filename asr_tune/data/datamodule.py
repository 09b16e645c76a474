"""Datasets and the ``LightningDataModule``: cached log-mel features for training, waveforms for inference.

Audio is validated once (header read with soundfile) before training starts; bad utterances raise a
``DataError`` naming the file, or are skipped and counted when ``data.skip_bad_utterances`` is set.

- ``FeatureDataset`` (train/dev): log mel power from the on-disk cache (``cache.py``; computed on the
  fly when ``features.cache`` is off) -> speed factor / VTLP / noise / reverberation (train items the
  sampler marks for augmentation) -> per-utterance normalisation. Batches: ``feats (B, T, n_mels)``,
  ``feat_lens (B,)``, ``targets (B, L)``, ``target_lens (B,)``, ``texts``, ``ids``.
- ``SpeechDataset`` (inference, quantization): waveforms; batches ``wav (B, samples)``, ``wav_lens``.
The training corpus may be a weighted mix of manifests (``data.train_mix``), see ``sampling.py``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from asr_tune.config import DataConfig, FeatureConfig
from asr_tune.data.audio import load_audio
from asr_tune.data.augment import Augmenter
from asr_tune.data.cache import FeatureStore, cache_folder, speed_waveform
from asr_tune.data.features import LogMel
from asr_tune.data.checks import check_all
from asr_tune.data.manifest import Utterance, load_corpus
from asr_tune.data.sampling import BatchPlan, DurationBatchSampler, EpochBatchSampler, ItemKey, Padded
from asr_tune.errors import ConfigError, DataError

if TYPE_CHECKING:
    from asr_tune.data.tokenizer import Tokenizer

log = logging.getLogger(__name__)

DECODE_BATCH_SECONDS = 60.0
"""Audio seconds per batch when decoding for evaluation or quantization (``asr-tune evaluate
--batch-seconds`` overrides it). Training batches use ``data.batch_seconds``."""


def check_utterance(utt: Utterance, source_rate: int = 0) -> None:
    path = Path(utt.audio_filepath)
    if not path.is_file():
        raise DataError(f"{path}: audio file not found (utterance {utt.id})")
    try:
        info = sf.info(str(path))
    except Exception as err:
        raise DataError(f"{path}: cannot decode audio ({err})") from None
    if info.frames <= 0:
        raise DataError(f"{path}: audio file has zero samples (utterance {utt.id})")
    if source_rate and info.samplerate != source_rate:
        raise DataError(f"{path}: sample rate {info.samplerate} Hz, expected data.source_sample_rate="
                        f"{source_rate}")


def validated_rows(source: str, cfg: DataConfig, split: str) -> list[Utterance]:
    """Load a manifest/LibriSpeech folder and check every file's header before training starts."""
    rows = load_corpus(source)
    decode = split in ("train", "dev") or split.startswith("train_mix")  # fully, before the first step
    checked, bad = check_all(rows, cfg.source_sample_rate, decode)
    if bad and not cfg.skip_bad_utterances:
        more = f" (+{len(bad) - 1} more bad utterance(s))" if len(bad) > 1 else ""
        raise DataError(f"{bad[0]}{more}; --skip-bad-utterances (data.skip_bad_utterances) skips them")
    good = [utt for utt in checked if utt.duration <= cfg.max_duration]
    if bad:
        log.warning("%s: skipped %d bad utterance(s) (skip_bad_utterances); first: %s", split, len(bad), bad[0])
    if not good:
        raise DataError(f"{source}: no usable utterances in the {split} split")
    return good


class SpeechDataset(Dataset):
    """Waveforms of ``rows`` at ``sample_rate`` (inference and quantization; no augmentation)."""

    def __init__(self, rows: list[Utterance], tokenizer: "Tokenizer", sample_rate: int) -> None:
        self.rows, self.tok, self.sr = rows, tokenizer, sample_rate

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        utt = self.rows[i]
        return {"wav": load_audio(utt.audio_filepath, self.sr),
                "tokens": torch.tensor(self.tok.encode(utt.text), dtype=torch.long),
                "text": utt.text, "id": utt.id}


def collate(items: list[dict]) -> dict:
    wav_lens = torch.tensor([len(x["wav"]) for x in items])
    wav = torch.zeros(len(items), int(wav_lens.max()))
    for i, x in enumerate(items):
        wav[i, : len(x["wav"])] = x["wav"]
    return {"wav": wav, "wav_lens": wav_lens, **_targets(items)}


def _targets(items: list[dict]) -> dict:
    tgt_lens = torch.tensor([len(x["tokens"]) for x in items])
    tgt = torch.zeros(len(items), max(int(tgt_lens.max()), 1), dtype=torch.long)
    for i, x in enumerate(items):
        tgt[i, : len(x["tokens"])] = x["tokens"]
    return {"targets": tgt, "target_lens": tgt_lens, "texts": [x["text"] for x in items],
            "ids": [x["id"] for x in items],
            "pad": torch.tensor([bool(x.get("pad")) for x in items])}  # DDP padding repeats


def collate_features(items: list[dict]) -> dict:
    lens = torch.tensor([x["feats"].shape[0] for x in items])
    feats = torch.zeros(len(items), int(lens.max()), items[0]["feats"].shape[1])
    for i, x in enumerate(items):
        feats[i, : x["feats"].shape[0]] = x["feats"]
    return {"feats": feats, "feat_lens": lens, **_targets(items)}


class FeatureDataset(Dataset):
    """Normalised log-mel features of ``rows`` (concatenated ``sources``), augmented when asked.

    ``sources`` lists ``(first_row, n_rows)`` per corpus so that each corpus has its own cache
    entries; indexed by ``int`` (no augmentation) or by the sampler's ``ItemKey``.
    """

    def __init__(self, rows: list[Utterance], sources: list[tuple[int, int]], tokenizer: "Tokenizer",
                 features: FeatureConfig, sample_rate: int, train: bool = False, seed: int = 0,
                 cache_folders: list[Path] | None = None) -> None:
        self.rows, self.sources, self.tok, self.cfg, self.sr = rows, sources, tokenizer, features, sample_rate
        self.seed, self.train = seed, train
        self.speeds = sorted(set(features.speed_perturb) | {1.0}) if train else [1.0]
        self.mel = LogMel(features, sample_rate)
        self.augment = Augmenter(features, sample_rate)
        self.stores: dict[tuple[int, float], FeatureStore] = {}
        if features.cache:
            for s, (first, n) in enumerate(sources):
                for speed in self.speeds:
                    self.stores[(s, speed)] = FeatureStore.open(
                        rows[first: first + n], features, sample_rate, speed,
                        cache_folders[s] if cache_folders else None)

    def __len__(self) -> int:
        return len(self.rows)

    def _log_power(self, i: int, speed: float) -> torch.Tensor:
        if self.stores:
            s = max(k for k, (first, _) in enumerate(self.sources) if first <= i)
            return self.stores[(s, speed)].get(i - self.sources[s][0])
        wav = speed_waveform(load_audio(self.rows[i].audio_filepath, self.sr), self.sr, speed)
        with torch.inference_mode():
            logp, flen = self.mel.log_power(wav[None], torch.tensor([wav.numel()]))
        return logp[0, : int(flen[0])].clone()

    def __getitem__(self, key: int | ItemKey) -> dict:
        i, aug = (key, False) if isinstance(key, int) else (key.row, key.augment and self.train)
        speed = 1.0
        if aug:
            rng = np.random.default_rng([self.seed, key.epoch, key.position, i])
            speed = float(rng.choice(self.speeds))
        logp = self._log_power(i, speed)
        if aug and self.augment.active:
            logp = self.augment(logp, rng)
        n = torch.tensor([logp.shape[0]])
        utt = self.rows[i]
        return {"feats": self.mel.finish(logp[None], n)[0],
                "tokens": torch.tensor(self.tok.encode(utt.text), dtype=torch.long),
                "text": utt.text, "id": utt.id, "pad": isinstance(key, Padded)}


class ASRDataModule(L.LightningDataModule):
    """Train/dev/test loaders from the data config; the tokenizer is built by the caller.

    ``train_rows`` / ``mix_rows`` (one list per ``data.train_mix`` entry) and ``dev_rows`` may be
    given already validated; otherwise they are read and validated here.
    """

    def __init__(self, cfg: DataConfig, features: FeatureConfig, tokenizer: "Tokenizer", seed: int = 0,
                 train_rows: list[Utterance] | None = None, dev_rows: list[Utterance] | None = None,
                 test_rows: list[Utterance] | None = None, mix_rows: list[list[Utterance]] | None = None,
                 clean_batches: int = 0) -> None:
        super().__init__()
        self.cfg, self.features, self.tok, self.seed = cfg, features, tokenizer, seed
        self.rows = {"train": train_rows, "dev": dev_rows, "test": test_rows}
        self.mix_rows = mix_rows
        self.clean_batches = clean_batches
        self._datasets: dict[str, FeatureDataset] = {}

    def split_rows(self, split: str) -> list[Utterance]:
        if self.rows[split] is None:
            self.rows[split] = validated_rows(getattr(self.cfg, split), self.cfg, split)
            if split == "train" and self.cfg.limit_train:
                self.rows[split] = self.rows[split][: self.cfg.limit_train]
        return self.rows[split]  # type: ignore[return-value]

    def mixes(self) -> list[list[Utterance]]:
        if self.mix_rows is None:
            self.mix_rows = mix_rows(self.cfg)
        return self.mix_rows

    def plan(self, train: bool) -> BatchPlan:
        return BatchPlan(self.cfg.batch_seconds, self.cfg.batch_size, self.cfg.bucketing, train, self.seed,
                         sortagrad=train and self.cfg.sortagrad)

    def dataset(self, split: str) -> FeatureDataset:
        """Built once per split (opening the feature cache, building missing entries)."""
        if split not in self._datasets:
            groups = [self.split_rows(split)] + (self.mixes() if split == "train" else [])
            paths = [getattr(self.cfg, split)] + ([m.path for m in self.cfg.train_mix] if split == "train" else [])
            rows = [u for g in groups for u in g]
            firsts = np.cumsum([0] + [len(g) for g in groups[:-1]]).tolist()
            self._datasets[split] = FeatureDataset(
                rows, list(zip(firsts, map(len, groups))), self.tok, self.features, self.cfg.sample_rate,
                split == "train", self.seed, [cache_folder(self.features, p) for p in paths])
        return self._datasets[split]

    def train_sampler(self) -> EpochBatchSampler:
        ds = self.dataset("train")
        n_main = ds.sources[0][1]
        draws = [n_main] + [max(1, round(n_main * m.weight / self.cfg.train_weight)) for m in self.cfg.train_mix]
        sources = [(first, n, d) for (first, n), d in zip(ds.sources, draws)]
        return EpochBatchSampler([r.duration for r in ds.rows], self.plan(True), sources, self.clean_batches)

    def _loader(self, ds: Dataset, sampler: DurationBatchSampler) -> DataLoader:
        return DataLoader(ds, batch_sampler=sampler, collate_fn=collate_features,
                          num_workers=self.cfg.num_workers, pin_memory=self.cfg.pin_memory,
                          persistent_workers=self.cfg.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("train"), self.train_sampler())

    def val_dataloader(self) -> DataLoader:
        ds = self.dataset("dev")
        return self._loader(ds, DurationBatchSampler([r.duration for r in ds.rows], self.plan(False),
                                                     mark_padding=True))

    def test_dataloader(self) -> DataLoader:
        ds = self.dataset("test")
        return self._loader(ds, DurationBatchSampler([r.duration for r in ds.rows], self.plan(False)))


def mix_rows(cfg: DataConfig) -> list[list[Utterance]]:
    """Validated rows of every ``data.train_mix`` corpus; a missing one is an error naming it."""
    out = []
    for k, m in enumerate(cfg.train_mix):
        if not Path(m.path).exists():
            raise ConfigError(f"data.train_mix[{k}].path: {m.path} not found")
        out.append(validated_rows(m.path, cfg, f"train_mix[{k}]"))
    return out
