"""The on-disk feature cache: same features as the on-the-fly path, reused when the key matches,
rebuilt (never used) when the settings differ or a file is truncated or foreign."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr_tune.config import FeatureConfig, load_config
from asr_tune.data.cache import FeatureStore, cache_folder, cache_key
from asr_tune.data.manifest import Utterance

SR = 8000


def _corpus(tmp: Path, n: int = 4) -> tuple[Path, list[Utterance]]:
    rng = np.random.default_rng(0)
    (tmp / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        dur = 0.4 + 0.2 * i
        t = np.arange(int(dur * SR)) / SR
        wav = 0.3 * np.sin(2 * np.pi * (200 + 80 * i) * t) + 0.01 * rng.standard_normal(t.size)
        path = tmp / "audio" / f"u{i}.flac"
        sf.write(str(path), wav.astype(np.float32), SR, subtype="PCM_16")
        rows.append(Utterance(audio_filepath=str(path), duration=dur, text="one two", speaker="s", id=f"u{i}"))
    manifest = tmp / "train.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"audio/u{i}.flac", "duration": r.duration,
                                            "text": r.text, "speaker": "s", "id": r.id}) + "\n"
                                for i, r in enumerate(rows)))
    return manifest, rows


def test_cached_features_equal_on_the_fly_features(tmp_path: Path) -> None:
    from asr_tune.data.datamodule import FeatureDataset
    from asr_tune.data.tokenizer import WordTokenizer

    _, rows = _corpus(tmp_path)
    tok = WordTokenizer.train([r.text for r in rows])
    on = FeatureDataset(rows, [(0, len(rows))], tok, FeatureConfig(n_mels=40, cache=True), SR,
                        cache_folders=[tmp_path / "c"])
    off = FeatureDataset(rows, [(0, len(rows))], tok, FeatureConfig(n_mels=40, cache=False), SR)
    for i in range(len(rows)):
        a, b = on[i]["feats"], off[i]["feats"]
        assert a.shape == b.shape and a.shape[1] == 40
        assert float((a - b).abs().max()) < 0.08 and float((a - b).abs().mean()) < 0.005  # float16 storage


def test_cache_is_reused_and_keyed_by_settings_and_audio(tmp_path: Path) -> None:
    _, rows = _corpus(tmp_path)
    cfg = FeatureConfig(n_mels=40)
    folder = tmp_path / "c"
    FeatureStore.open(rows, cfg, SR, 1.0, folder)
    npy = next(folder.glob("*.npy"))
    mtime = npy.stat().st_mtime_ns
    FeatureStore.open(rows, cfg, SR, 1.0, folder)
    assert npy.stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert cache_key(rows, cfg, SR, 1.0) != cache_key(rows, FeatureConfig(n_mels=32), SR, 1.0)
    assert cache_key(rows, cfg, SR, 1.0) != cache_key(rows, cfg, SR, 1.1)
    assert cache_key(rows, cfg, SR, 1.0) != cache_key(rows, FeatureConfig(n_mels=40, hop_ms=12.5), SR, 1.0)
    wav, _ = sf.read(rows[0].audio_filepath)
    sf.write(rows[0].audio_filepath, wav[::-1].copy(), SR, subtype="PCM_16")  # same size, new content
    assert cache_key(rows, cfg, SR, 1.0) != json.loads(next(folder.glob("*.json")).read_text())["key"]


@pytest.mark.parametrize("damage", ["truncate", "foreign_key", "garbage_json"])
def test_damaged_cache_is_rebuilt_never_used(tmp_path: Path, damage: str, caplog) -> None:
    _, rows = _corpus(tmp_path)
    cfg = FeatureConfig(n_mels=40)
    folder = tmp_path / "c"
    good = FeatureStore.open(rows, cfg, SR, 1.0, folder)
    expected = [good.get(i).clone() for i in range(len(rows))]
    npy, meta = next(folder.glob("*.npy")), next(folder.glob("*.json"))
    if damage == "truncate":
        npy.write_bytes(npy.read_bytes()[: npy.stat().st_size // 2])
    elif damage == "foreign_key":
        m = json.loads(meta.read_text())
        m["key"] = "0" * 32
        meta.write_text(json.dumps(m))
    else:
        meta.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="asr_tune.data.cache"):
        again = FeatureStore.open(rows, cfg, SR, 1.0, folder)
    assert "rebuilding" in caplog.text
    for i in range(len(rows)):
        assert torch.equal(again.get(i), expected[i])


def test_default_cache_folder_beside_the_manifest_or_user_cache_when_read_only(tmp_path: Path, monkeypatch) -> None:
    manifest, _ = _corpus(tmp_path)
    assert cache_folder(FeatureConfig(), manifest) == tmp_path / ".feature_cache"
    assert cache_folder(FeatureConfig(cache_dir=str(tmp_path / "x")), manifest) == tmp_path / "x"
    monkeypatch.setattr("asr_tune.data.cache._writable", lambda folder: False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home"))
    assert cache_folder(FeatureConfig(), manifest) == tmp_path / "home" / "asr-tune" / "features"


def test_train_mix_errors_name_the_key(tmp_path: Path) -> None:
    from asr_tune.data.datamodule import mix_rows
    from asr_tune.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data.train_mix.0.weight"):
        load_config(None, {"data.train_mix": [{"path": "x.jsonl", "weight": 0}]})
    cfg = load_config(None, {"data.train_mix": [{"path": str(tmp_path / "missing.jsonl"), "weight": 0.5}]})
    with pytest.raises(ConfigError, match=r"data.train_mix\[0\].path: .*missing.jsonl not found"):
        mix_rows(cfg.data)
