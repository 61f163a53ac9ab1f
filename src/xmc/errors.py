"""Exception types raised by xmc for bad input and bad configuration."""

from __future__ import annotations

import os


class XMCError(Exception):
    """Base class of every error xmc raises on purpose."""


class DataFormatError(XMCError, ValueError):
    """A data file is malformed.

    The message names the file, the 1-based line number (when one applies)
    and the problem, e.g. ``train.txt, line 7: malformed feature 'a:b'``.
    """

    def __init__(self, path: str | os.PathLike | None, line: int | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.problem = problem
        where = self.path or "<input>"
        if line is not None:
            where = f"{where}, line {line}"
        super().__init__(f"{where}: {problem}")


class ConfigError(XMCError, ValueError):
    """A configuration is invalid: unknown key, wrong type or bad value."""


class ModelFormatError(XMCError, ValueError):
    """A saved model directory is missing files or was written by an incompatible version."""


class OutputError(XMCError, ValueError):
    """An output path cannot be written: it holds something xmc may not replace, or is one of the inputs."""


class EngineError(XMCError, RuntimeError):
    """The distributed engine is missing, unreachable, or a task failed on every try."""
