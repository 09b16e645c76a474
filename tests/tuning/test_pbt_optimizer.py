"""PBT/PB2 may not mutate optim.optimizer or optim.schedule: a restored checkpoint's optimiser state
belongs to the old optimiser (Adam moments into SGD: KeyError 'momentum'; AdamW -> Adam silently keeps
decoupled decay). The search refuses such a space with one error naming the key, before any trial."""
from __future__ import annotations

from pathlib import Path

import pytest

from asr_tune.config import load_config
from asr_tune.errors import SearchError

LR = {"optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}}


@pytest.mark.parametrize("key, spec", [
    ("optim.optimizer", {"type": "choice", "values": ["adamw", "sgd"]}),
    ("optim.schedule", {"type": "choice", "values": ["warmup_cosine", "noam"]}),
])
def test_pbt_refuses_optimizer_mutations(key: str, spec: dict, tmp_path: Path) -> None:
    searcher = "pbt"  # PB2 takes numeric ranges only, so a choice never reaches it
    import ray

    from asr_tune.tuning.runner import search

    cfg = load_config(None, {"search.searcher": searcher, "search.num_samples": 4,
                             "search.storage": str(tmp_path / "s"), "search.space": {**LR, key: spec}})
    with pytest.raises(SearchError, match=rf"searcher '{searcher}' cannot tune '{key}': a restored checkpoint"):
        search(cfg)
    assert not ray.is_initialized() and not (tmp_path / "s").exists()  # before any trial or folder


def test_other_searchers_may_tune_the_optimizer() -> None:
    from asr_tune.tuning.registry import build_search

    cfg = load_config(None, {"search.searcher": "asha", "search.space": {
        **LR, "optim.optimizer": {"type": "choice", "values": ["adamw", "sgd"]}}})
    assert build_search(cfg.search, max_t=4).scheduler is not None
