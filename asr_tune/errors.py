"""Exceptions with one-line, user-facing messages.

Every error a user can cause (bad YAML, bad audio, bad manifest, infeasible resources) is raised as
one of these, with the file/line/key named, so the CLI can print a single line and exit non-zero.
"""
from __future__ import annotations


class AsrTuneError(Exception):
    """Base class: ``str(err)`` is a complete one-line message for the user."""


class ConfigError(AsrTuneError):
    """A config file, override or search space is invalid (the key is named)."""


class DataError(AsrTuneError):
    """A corpus, manifest or audio file is invalid (the file/line is named)."""


class SearchError(AsrTuneError):
    """A search cannot start (searcher, space, resources or storage is wrong)."""


class QuantizationError(AsrTuneError):
    """The int8 stage cannot run on the given checkpoint or calibration data."""


class GateFailed(AsrTuneError):
    """The int8 model's WER did not hold against the float model's."""


class ServiceError(AsrTuneError):
    """Talking to a Ray head (jobs API) failed: unreachable, auth, unknown job."""
