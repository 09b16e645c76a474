"""Leave-one-speaker-out (LOSO) evaluation of one config on FSDD connected digits — no Ray involved.

For each speaker (a fold): build the fold's digit corpus with that speaker as the test speaker, the
next ``dev_speakers_per_fold`` speakers (in sorted order, wrapping round) as the dev speakers and
the rest as the train speakers (speaker-disjoint, see :mod:`asr_tune.data.digits`); train the config
with its ``data.train/dev/test`` pointed at the fold corpus (``data.train_mix`` is left as it is);
score the best checkpoint on the fold's test split. The result says whether a WER is an accident of
one speaker: per-fold WER, their mean and sample standard deviation, and the pooled WER.

Layout under ``--out``::

    <out>/<speaker>/corpus/{train,dev,test}.jsonl, audio/   the fold's corpus
    <out>/<speaker>/run/                                    trainer.output_dir (checkpoints, logs)
    <out>/<speaker>/fold.json                               the fold's result (written last)
    <out>/loso.json                                         every fold + mean / std / pooled WER

Resumable: a fold whose ``fold.json`` exists and carries the same fold hash (the config without its
data paths and output folder, the corpus sizes and seed, the source and the fold's speakers) is not
rerun; any other fold is rebuilt and retrained from scratch.

Usage::

    asr-tune loso configs/fsdd_digits.yaml --src ../shared/data/fsdd --out runs/loso
    asr-tune loso configs/fsdd_digits.yaml --src ../shared/data/fsdd --out runs/loso --speakers lucas yweweler
    asr-tune loso configs/fsdd_digits.yaml --src ../shared/data/fsdd --out runs/loso --dev-speakers-per-fold 1 \\
        --n-train 1200 --n-dev 150 --n-test 300 --set trainer.max_epochs=10
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from asr_tune.config import ExperimentConfig
from asr_tune.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FOLD_FILE = "fold.json"
SUMMARY_FILE = "loso.json"
#: data paths and the output folder differ per fold by design; the fold hash leaves them out
_PER_FOLD_KEYS = (("data", "train"), ("data", "dev"), ("data", "test"), ("trainer", "output_dir"))


@dataclass(frozen=True)
class CorpusSizes:
    """Connected-digit strings per split of each fold's corpus (``asr-tune corpus digits`` sizes)."""
    n_train: int = 1200
    n_dev: int = 150
    n_test: int = 300
    seed: int = 0


@dataclass
class Fold:
    speaker: str
    dev_speakers: list[str]
    train_speakers: list[str]
    fold_hash: str = ""
    test_wer: float = float("nan")
    errors: int = 0          # substitutions + deletions + insertions on the test split
    n_words: int = 0
    n_utts: int = 0
    best_val_wer: float = float("nan")
    epochs: int = 0
    wall_s: float = 0.0
    best_checkpoint: str = ""
    reused: bool = field(default=False, compare=False)


@dataclass
class LosoResult:
    folds: list[Fold]
    mean_wer: float
    std_wer: float      # sample standard deviation over folds (n - 1); 0 for one fold
    pooled_wer: float   # all folds' errors / all folds' reference words
    out_dir: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """A small fixed-width table: one row per fold, then mean ± std and pooled WER."""
        lines = [f"{'test speaker':<14}{'dev':<12}{'test WER %':>11}{'val WER %':>11}{'epochs':>8}"
                 f"{'wall s':>8}  ", "-" * 66]
        for f in self.folds:
            lines.append(f"{f.speaker:<14}{','.join(f.dev_speakers):<12}{f.test_wer:>11.2f}"
                         f"{f.best_val_wer:>11.2f}{f.epochs:>8d}{f.wall_s:>8.0f}  "
                         f"{'(reused)' if f.reused else ''}")
        lines += ["-" * 66, f"{'mean ± std':<26}{self.mean_wer:>11.2f} ± {self.std_wer:.2f}",
                  f"{'pooled':<26}{self.pooled_wer:>11.2f}"]
        return "\n".join(line.rstrip() for line in lines)


def plan_folds(known: Sequence[str], speakers: Sequence[str] | None = None,
               dev_speakers_per_fold: int = 1) -> list[Fold]:
    """The folds for ``speakers`` (default: every known speaker); one-line errors for bad input."""
    known = sorted(known)
    listing = f"known speakers: {', '.join(known)}"
    speakers = list(known if not speakers else speakers)
    unknown = [s for s in speakers if s not in known]
    if unknown:
        raise DataError(f"--speakers: unknown speaker(s) {', '.join(unknown)}; {listing}")
    if len(set(speakers)) != len(speakers):
        raise DataError(f"--speakers: a speaker is named twice ({' '.join(speakers)})")
    if not 1 <= dev_speakers_per_fold <= len(known) - 2:
        raise DataError(f"--dev-speakers-per-fold {dev_speakers_per_fold}: must be 1..{len(known) - 2} "
                        f"so that each fold keeps a test, dev and train speaker ({listing})")
    folds = []
    for spk in speakers:
        i = known.index(spk)
        dev = [known[(i + k) % len(known)] for k in range(1, dev_speakers_per_fold + 1)]
        folds.append(Fold(spk, dev, [s for s in known if s != spk and s not in dev]))
    return folds


def fold_hash(cfg: ExperimentConfig, src: Path, sizes: CorpusSizes, fold: Fold) -> str:
    """What decides a fold's result: the config minus per-fold paths, the corpus and its speakers."""
    raw = cfg.to_dict()
    for section, key in _PER_FOLD_KEYS:
        raw[section].pop(key, None)
    payload = {"config": raw, "src": str(src.resolve()), "sizes": asdict(sizes),
               "test": fold.speaker, "dev": fold.dev_speakers}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _finished(path: Path, expected_hash: str) -> Fold | None:
    """The fold's earlier result if it exists, parses and has ``expected_hash``; else None."""
    try:
        data = json.loads(path.read_text())
        fold = Fold(**data)
    except (OSError, ValueError, TypeError):
        return None
    if fold.fold_hash != expected_hash or not math.isfinite(fold.test_wer):
        return None
    fold.reused = True
    return fold


def _run_fold(cfg: ExperimentConfig, src: Path, sizes: CorpusSizes, fold: Fold, fold_dir: Path,
              progress: bool) -> Fold:
    from asr_tune.data.digits import build_digit_corpus
    from asr_tune.training.run import train

    started = time.perf_counter()
    paths = build_digit_corpus(src, fold_dir / "corpus", test_speakers=[fold.speaker],
                               dev_speakers=fold.dev_speakers, n_train=sizes.n_train,
                               n_dev=sizes.n_dev, n_test=sizes.n_test, seed=sizes.seed,
                               progress=progress)
    fold_cfg = cfg.with_overrides({"data.train": str(paths["train"]), "data.dev": str(paths["dev"]),
                                   "data.test": str(paths["test"]),
                                   "trainer.output_dir": str(fold_dir / "run")}, source="loso fold")
    result = train(fold_cfg, evaluate_test=True)
    test = result.test or {}
    fold.test_wer = float(test.get("wer", float("nan")))
    fold.errors = int(test.get("substitutions", 0) + test.get("deletions", 0) + test.get("insertions", 0))
    fold.n_words = int(test.get("n_words", 0))
    fold.n_utts = int(test.get("n_utts", 0))
    fold.best_val_wer = float(result.best_val_wer)
    fold.epochs = int(result.epochs)
    fold.best_checkpoint = str(result.best_checkpoint)
    fold.wall_s = round(time.perf_counter() - started, 1)
    return fold


def _summary(folds: list[Fold], out: Path) -> LosoResult:
    wers = [f.test_wer for f in folds]
    mean = sum(wers) / len(wers)
    std = math.sqrt(sum((w - mean) ** 2 for w in wers) / (len(wers) - 1)) if len(wers) > 1 else 0.0
    words = sum(f.n_words for f in folds)
    pooled = 100.0 * sum(f.errors for f in folds) / words if words else float("nan")
    return LosoResult(folds, round(mean, 3), round(std, 3), round(pooled, 3), str(out))


def run_loso(cfg: ExperimentConfig, src: str | Path, out: str | Path,
             speakers: Sequence[str] | None = None, dev_speakers_per_fold: int = 1,
             sizes: CorpusSizes = CorpusSizes(), progress: bool = False,
             config_path: str | None = None) -> LosoResult:
    """Run (or resume) every fold; writes each ``<out>/<speaker>/fold.json`` and ``<out>/loso.json``."""
    from asr_tune.data.digits import source_speakers

    src, out = Path(src), Path(out)
    for name in ("n_train", "n_dev", "n_test"):
        if getattr(sizes, name) < 1:
            raise DataError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(sizes, name)}")
    folds = plan_folds(source_speakers(src), speakers, dev_speakers_per_fold)
    for k, mix in enumerate(getattr(cfg.data, "train_mix", None) or []):  # before any fold is built
        if not Path(mix.path).exists():
            raise ConfigError(f"data.train_mix[{k}].path: {mix.path} not found")
    out.mkdir(parents=True, exist_ok=True)
    done: list[Fold] = []
    for k, fold in enumerate(folds, 1):
        fold.fold_hash = fold_hash(cfg, src, sizes, fold)
        fold_dir = out / fold.speaker
        earlier = _finished(fold_dir / FOLD_FILE, fold.fold_hash)
        if earlier is not None:
            log.info("fold %d/%d (%s): finished earlier, %.2f%% WER", k, len(folds), fold.speaker,
                     earlier.test_wer)
            done.append(earlier)
            continue
        log.info("fold %d/%d: test %s, dev %s, train %s", k, len(folds), fold.speaker,
                 ",".join(fold.dev_speakers), ",".join(fold.train_speakers))
        (fold_dir / FOLD_FILE).unlink(missing_ok=True)  # a stale result never outlives a rerun
        fold_dir.mkdir(parents=True, exist_ok=True)
        fold = _run_fold(cfg, src, sizes, fold, fold_dir, progress)
        _write_json(fold_dir / FOLD_FILE, asdict(fold))
        done.append(fold)
    result = _summary(done, out)
    summary = {"config": config_path, "src": str(src.resolve()), "sizes": asdict(sizes),
               "dev_speakers_per_fold": dev_speakers_per_fold, **result.to_dict()}
    for f in summary["folds"]:
        f.pop("reused", None)
    _write_json(out / SUMMARY_FILE, summary)
    return result
