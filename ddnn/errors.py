"""Errors that ddnn reports to the user as one line and exit code 2."""

from __future__ import annotations

__all__ = ["InputError", "ConfigError"]


class InputError(Exception):
    """Bad input: reported as one line on stderr, exit code 2, no traceback."""

    exit_code = 2


class ConfigError(InputError):
    """A bad value in an input file, located by file name and dotted key path.

    Parameters
    ----------
    key : dotted key path such as ``solver.local.max_iter`` ('' for the file itself)
    message : what was expected and what was found
    source : the file the value came from (filled in by the loader)
    """

    def __init__(self, key: str, message: str, source: str | None = None):
        self.key = key
        self.message = message
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [p for p in (self.source, self.key) if p]
        return ": ".join(parts + [self.message])

    def __reduce__(self):  # picklable, so that it can be broadcast to every rank
        return (ConfigError, (self.key, self.message, self.source))

    def located(self, source: str) -> ConfigError:
        """The same error, naming the file it came from."""
        return ConfigError(self.key, self.message, self.source or source)
