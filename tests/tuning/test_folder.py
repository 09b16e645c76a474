"""ExperimentFolder's full-trial length: report rounds count, not trainer.max_epochs."""
from __future__ import annotations

from pathlib import Path

from asr_tune.tuning.folder import ExperimentFolder


def test_max_epochs_counts_report_rounds() -> None:
    rounds = ExperimentFolder(Path("."), {"config": {"trainer": {
        "max_epochs": 1000, "max_steps": 410, "report_every_steps": 20}}})
    assert rounds.max_epochs == 21  # ceil(410 / 20): the last, partial round reports too
    epochs = ExperimentFolder(Path("."), {"config": {"trainer": {"max_epochs": 7, "max_steps": 0}}})
    assert epochs.max_epochs == 7
