"""Errors the CLI turns into a message and an exit code, never a traceback.

Exit codes are part of the CLI contract: 0 done, 1 an AWS operation failed after retries,
2 usage/configuration/precondition (nothing was changed), 130 interrupted (state saved).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_AWS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class ProvisionError(Exception):
    """An expected failure: printed as `message` (and `hint`), exits with `exit_code`."""

    exit_code = EXIT_AWS

    def __init__(self, message: str, hint: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code  # the AWS error code behind it, when there is one
        self.traceback: str | None = None


class ConfigError(ProvisionError):
    """Bad input, configuration or precondition; raised before anything is changed."""

    exit_code = EXIT_USAGE


class StateError(ConfigError):
    """The state file is foreign, corrupt or locked; it is left untouched."""


class AmbiguousResource(ConfigError):
    """Two resources carry the same stack and step tags: we refuse to guess which one is ours."""


class ForeignResource(ConfigError):
    """A resource the state file names carries another stack's tags, or none of the tool's: it is
    never adopted, changed or deleted, and the command stops before changing anything."""


class DriftConflict(ConfigError):
    """A live resource differs from the configuration in a way that cannot be changed in place."""


class AwsFailure(ProvisionError):
    """An AWS operation failed for good (after the retries its error code allows)."""

    exit_code = EXIT_AWS


class BuildFailed(AwsFailure):
    """An image build in CodeBuild ended in failure: the message carries its last log lines."""


class Interrupted(BaseException):
    """Raised inside worker threads once the run is cancelled (Ctrl-C); not an Exception so
    that no step code can swallow it by accident."""
