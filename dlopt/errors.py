"""The error contract: user errors are `DloptError`s, printed as one line and exit code 2."""

from __future__ import annotations

import re
from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of every dlopt command (see the README)."""

    OK = 0
    GATE_FAILED = 1
    USAGE_ERROR = 2
    INCONCLUSIVE = 3
    INTERNAL_ERROR = 4


class DloptError(Exception):
    """A problem with the user's input that the user can fix.

    The message names what went wrong and where; `hint` says how to fix it.
    """

    exit_code = ExitCode.USAGE_ERROR

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and the hint on one line, as the CLI prints it."""
        text = self.message.rstrip(".")
        if self.hint:
            hint = self.hint.rstrip(".")
            text += f". {hint[:1].upper()}{hint[1:]}"
        return " ".join(text.split()) + "."


class InputSpecError(DloptError):
    """An input spec (`--input NAME:DIMS[:DTYPE]`) does not parse or does not fit the model."""


class SourceError(DloptError):
    """A model source cannot be found, imported or loaded."""


class WeightsError(DloptError):
    """Weights cannot be read or do not fit the model."""


class ExportError(DloptError):
    """An export failed or the exported model disagrees with the original (parity)."""


class DataError(DloptError):
    """An evaluation or calibration data source is missing, malformed or does not fit."""


class BackendError(DloptError):
    """A backend is unknown, unavailable here, or cannot run the artifact."""


class ConfigError(DloptError):
    """A config value is invalid; the message names the key, the value and the allowed ones."""


class ArtifactError(DloptError):
    """An artifact or its manifest is missing, unreadable or cannot be written."""


class PruneError(DloptError):
    """Pruning options are invalid, or the model cannot be pruned as asked."""


class BudgetNotMetError(DloptError):
    """An accuracy budget (`--max-drift`) cannot be met; nothing that looks like a success is
    left behind. Exit 1, like a failed gate."""

    exit_code = ExitCode.GATE_FAILED


class VerificationError(DloptError):
    """An artifact, a manifest, a parent or an attestation does not match what was recorded
    or signed (`dlopt verify`). Exit 1: the check ran and failed."""

    exit_code = ExitCode.GATE_FAILED


class KeyFileError(DloptError):
    """A signing or encryption key is missing, unreadable or of the wrong kind."""


class DecryptionError(DloptError):
    """An encrypted artifact cannot be decrypted: wrong key, truncated or tampered file."""


_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def first_line(error: BaseException, limit: int = 240, root_cause: bool = False) -> str:
    """`TypeName: first non-blank line` of a library's exception, for one-line messages.

    Terminal colour codes are dropped. `root_cause` reports the innermost `__cause__` instead
    (exporters wrap the error that says what went wrong in several layers of their own).
    """
    if root_cause:
        while error.__cause__ is not None:
            error = error.__cause__
    text = _TERMINAL_CODES.sub("", str(error))
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0][:limit] if lines else ''}".rstrip(": ")
