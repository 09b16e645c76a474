"""The one manifest format every corpus goes through, and readers that produce it.

A manifest is JSONL, one utterance a line::

    {"audio_filepath": "audio/x.flac", "duration": 1.23, "text": "one two", "speaker": "s1", "id": "x"}

``audio_filepath`` may be relative to the manifest's folder. ``load_corpus(path)`` accepts a manifest
or a LibriSpeech-layout folder (``<spk>/<chapter>/*.flac`` + ``*.trans.txt``) and returns validated
``Utterance`` rows with absolute paths.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import soundfile as sf

from asr_tune.data.text import normalize_text  # noqa: F401  (re-exported: readers and corpora use it)
from asr_tune.errors import DataError
from asr_tune.textfile import read_utf8

REQUIRED_FIELDS = ("audio_filepath", "duration", "text", "speaker", "id")
MAX_DECLARED_DURATION = 24 * 3600.0  # seconds; a larger "duration" is a typo, not an utterance


@dataclass(frozen=True)
class Utterance:
    audio_filepath: str
    duration: float
    text: str
    speaker: str
    id: str
    where: str = field(default="", compare=False, repr=False)  # "manifest:line", for error messages

    def to_json(self, relative_to: Path | None = None) -> dict:
        row = asdict(self)
        row.pop("where")
        if relative_to is not None:
            try:
                row["audio_filepath"] = os.path.relpath(self.audio_filepath, relative_to)
            except ValueError:
                pass
        return row


def read_manifest(path: str | Path) -> list[Utterance]:
    """Parse and validate a JSONL manifest; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found")
    base = path.parent.resolve()
    rows: list[Utterance] = []
    seen: set[str] = set()
    data = path.read_bytes()
    offset = 0
    for lineno, raw in enumerate(data.splitlines(keepends=True), 1):
        start, offset = offset, offset + len(raw)
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{path}:{lineno}: not UTF-8 text (byte offset {start + err.start}); "
                            "save the manifest as UTF-8") from None
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: not valid JSON ({err.msg})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object")
        missing = [f for f in REQUIRED_FIELDS if f not in obj]
        if missing:
            raise DataError(f"{where}: missing field(s) {', '.join(missing)}")
        _check_types(obj, where)
        text = normalize_text(obj["text"])  # the same normalisation the scorer applies
        if not text:
            raise DataError(f"{where}: empty transcript (id {obj['id']!r}; {obj['text']!r} after normalisation)")
        duration = float(obj["duration"])
        if not math.isfinite(duration) or not 0 < duration <= MAX_DECLARED_DURATION:
            raise DataError(f"{where}: duration must be > 0, finite and at most "
                            f"{MAX_DECLARED_DURATION:.0f} s, got {obj['duration']!r}")
        uid = str(obj["id"])
        if uid in seen:
            raise DataError(f"{where}: duplicate id {uid!r}")
        seen.add(uid)
        audio = Path(obj["audio_filepath"])
        if not audio.is_absolute():
            audio = base / audio
        rows.append(Utterance(str(audio), duration, text, str(obj["speaker"]), uid, where))
    if not rows:
        raise DataError(f"{path}: manifest has no utterances")
    return rows


def _check_types(obj: dict, where: str) -> None:
    """Field types: a null transcript is not the word "None", a number is not a file path."""
    def name(v: object) -> str:
        return "null" if v is None else type(v).__name__

    for key in ("audio_filepath", "text"):
        if not isinstance(obj[key], str):
            raise DataError(f"{where}: '{key}' must be a string, got {name(obj[key])} {obj[key]!r}")
    if not obj["audio_filepath"].strip():
        raise DataError(f"{where}: 'audio_filepath' is empty")
    d = obj["duration"]
    if isinstance(d, bool) or not isinstance(d, (int, float)):
        raise DataError(f"{where}: duration {d!r} is not a number (got {name(d)})")
    for key in ("speaker", "id"):
        if not isinstance(obj[key], (str, int)) or isinstance(obj[key], bool):
            raise DataError(f"{where}: '{key}' must be a string, got {name(obj[key])} {obj[key]!r}")


def write_manifest(path: str | Path, rows: Iterable[Utterance], relative: bool = True) -> Path:
    """Write atomically: a temp file renamed into place, so a failed build leaves no manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve() if relative else None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            for row in rows:
                fh.write(json.dumps(row.to_json(base)) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_librispeech(root: str | Path) -> list[Utterance]:
    """Read a LibriSpeech split folder (``<spk>/<chapter>/<spk>-<chapter>.trans.txt`` + audio), or
    the corpus root holding several splits (``<split>/<spk>/<chapter>/...``: all of them)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    rows: list[Utterance] = []
    for trans in sorted(root.glob("*/*/*.trans.txt")) or sorted(root.glob("*/*/*/*.trans.txt")):
        for lineno, line in enumerate(read_utf8(trans, DataError).splitlines(), 1):
            if not line.strip():
                continue
            uid, _, text = line.partition(" ")
            if not text.strip():
                raise DataError(f"{trans}:{lineno}: empty transcript for {uid!r}")
            audio = None
            for ext in (".flac", ".wav"):
                cand = trans.parent / f"{uid}{ext}"
                if cand.exists():
                    audio = cand
                    break
            if audio is None:
                raise DataError(f"{trans}:{lineno}: no audio file {uid}.flac next to the transcript")
            try:
                info = sf.info(str(audio))
            except Exception as err:  # soundfile raises its own error type
                raise DataError(f"{audio}: cannot read audio ({err})") from None
            rows.append(Utterance(str(audio.resolve()), info.frames / info.samplerate,
                                  normalize_text(text), uid.split("-")[0], uid, f"{trans}:{lineno}"))
    if not rows:
        raise DataError(f"{root}: no */*/*.trans.txt (a LibriSpeech split) or */*/*/*.trans.txt "
                        "(the LibriSpeech root) files")
    return rows


def load_corpus(path: str | Path) -> list[Utterance]:
    """A manifest file (``.jsonl``/``.json``) or a LibriSpeech-layout folder."""
    path = Path(path)
    if path.is_dir():
        return read_librispeech(path)
    if not path.exists():
        raise DataError(f"{path}: no such manifest or folder")
    return read_manifest(path)
