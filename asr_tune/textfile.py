"""Read a user's text file (YAML, JSONL manifest, LibriSpeech ``.trans.txt``) as strict UTF-8.

A file in another encoding is one line naming the file, the line and the byte offset of the first
byte that is not UTF-8, instead of a ``UnicodeDecodeError`` traceback.

Usage::

    from asr_tune.textfile import read_utf8
    text = read_utf8("configs/synth_tiny.yaml", ConfigError)
"""
from __future__ import annotations

from pathlib import Path

from asr_tune.errors import AsrTuneError


def decode_utf8(data: bytes, where: str | Path, error: type[AsrTuneError] = AsrTuneError) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise error(f"{where}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x} at byte offset "
                    f"{err.start}); save the file as UTF-8") from None


def read_utf8(path: str | Path, error: type[AsrTuneError] = AsrTuneError) -> str:
    """The file's text; a BOM is dropped. Undecodable bytes are a one-line ``error``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise error(f"{path}: cannot read ({err.strerror})") from None
    return decode_utf8(data, path, error).removeprefix("\ufeff")
