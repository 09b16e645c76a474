"""``asr-tune resume`` takes the relative path the README shows (pyarrow, under Tune, wants absolute
local paths: a relative one died with ``ArrowInvalid: URI has empty scheme``)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from asr_tune.config import load_config
from asr_tune.errors import SearchError


def test_relative_experiment_path_from_another_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from asr_tune.tuning.runner import STATE_FILE, resume

    exp = tmp_path / "runs" / "search" / "x"
    exp.mkdir(parents=True)
    (exp / STATE_FILE).write_text(json.dumps({"name": "x", "config": load_config(None).to_dict()}))
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    # a folder Tune never wrote: the one-line refusal, not a pyarrow traceback
    with pytest.raises(SearchError, match=r"/runs/search/x: Ray Tune has no restorable experiment state"):
        resume("../runs/search/x")
