"""The error that dataset readers raise for unreadable, malformed or missing data files."""

from __future__ import annotations

from ddnn.errors import InputError

__all__ = ["DatasetError"]


class DatasetError(InputError):
    """A data file is missing, unreadable or malformed.

    Reported to users as one line on stderr with exit code 2 (see :class:`ddnn.errors.InputError`),
    so the message is folded onto a single line: it names the file (full path), the line number
    where one applies, and what was expected.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(part.strip() for part in str(message).splitlines() if part.strip()))
