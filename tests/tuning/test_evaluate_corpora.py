"""``asr-tune evaluate`` on what users have on disk: a model trained on 8 kHz digits scores a 16 kHz
LibriSpeech-layout corpus (each file resampled to the model's rate, even when the training config
pinned data.source_sample_rate=8000), and the LibriSpeech *root* (several splits) is accepted."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

pytestmark = pytest.mark.slow  # uses the session's tiny trained model (~1 min once per session)


def _librispeech_root(rows: list[dict], root: Path, rate: int) -> Path:
    """``root/<split>/<spk>/<chapter>/<spk>-<chapter>-NNNN.flac`` + ``.trans.txt``, two splits."""
    for split, part in (("test-clean", rows[::2]), ("dev-clean", rows[1::2])):
        chapter = root / split / "19" / "198"
        chapter.mkdir(parents=True)
        lines = []
        for i, r in enumerate(part):
            data, sr = sf.read(r["audio_filepath"], dtype="float32")
            wav = AF.resample(torch.from_numpy(data), sr, rate).numpy()
            uid = f"19-198-{i:04d}"
            sf.write(str(chapter / f"{uid}.flac"), wav, rate, subtype="PCM_16")
            lines.append(f"{uid} {r['text'].upper()}\n")
        (chapter / "19-198.trans.txt").write_text("".join(lines))
    return root


def test_8khz_model_scores_a_16khz_librispeech_root(tiny_trained: dict, tmp_path: Path) -> None:
    from asr_tune.scoring import evaluate

    ckpt = torch.load(tiny_trained["ckpt"], map_location="cpu", weights_only=False)
    assert ckpt["asr_tune"]["config"]["data"]["sample_rate"] == 8000
    ckpt["asr_tune"]["config"]["data"]["source_sample_rate"] = 8000  # as configs/fsdd_digits.yaml
    pinned = tmp_path / "fsdd8k.ckpt"
    torch.save(ckpt, pinned)

    rows = [json.loads(x) for x in Path(tiny_trained["test"]).read_text().splitlines()][:24]
    manifest = tmp_path / "test8k.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    native = evaluate(pinned, manifest)
    assert 0 < native.wer < 100  # a real model, so the comparison below means something

    root = _librispeech_root(rows, tmp_path / "LibriSpeech", 16000)
    resampled = evaluate(pinned, root)  # the root: both splits
    assert resampled.n_utts == len(rows)
    assert resampled.n_words == native.n_words
    # 8 kHz -> 16 kHz on disk -> 8 kHz for the model: at most one word decoded differently
    assert abs(resampled.wer - native.wer) <= 100.0 / native.n_words + 1e-9
    split = evaluate(pinned, root / "test-clean")  # a single split still works
    assert split.n_utts == len(rows[::2])
