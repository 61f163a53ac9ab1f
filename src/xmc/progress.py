"""Progress bars for the stages a user waits on.

One helper, :func:`progress_bar`, wraps tqdm so every long loop in xmc looks and behaves the same:

* a bar with a count and an ETA on an interactive terminal (or a notebook);
* plain lines (``desc: n/total (p%) [elapsed<remaining, rate]``) at most every ``interval`` seconds
  when stderr is not a terminal (a log file, CI, ``2>run.log``): no carriage returns or bar glyphs;
* nothing for a stage shorter than ``delay`` seconds (2 by default), so fast runs stay silent;
* nothing at all inside :func:`quiet` (the CLI's ``--quiet``) or when the environment variable
  ``XMC_QUIET`` is ``1``/``true``; a caller's own ``disable=True`` (e.g. ``progress=False``) also wins.

The quiet switch is a :class:`contextvars.ContextVar`, so it is scoped to a ``with`` block (and to
the thread or task that set it) rather than being process-wide state.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from typing import IO, Iterable, Iterator

from tqdm import tqdm as _plain_tqdm

__all__ = ["progress_bar", "quiet", "is_quiet"]

_QUIET: contextvars.ContextVar[bool] = contextvars.ContextVar("xmc_quiet", default=False)

# Seconds between two plain lines on a non-interactive stderr.
DEFAULT_INTERVAL = 10.0
# A stage shorter than this shows nothing.
DEFAULT_DELAY = 2.0
_PLAIN_FORMAT = "{desc}: {n_fmt}/{total_fmt} ({percentage:.0f}%) [{elapsed}<{remaining}, {rate_fmt}]"
_PLAIN_FORMAT_NO_TOTAL = "{desc}: {n_fmt} [{elapsed}, {rate_fmt}]"


@contextlib.contextmanager
def quiet(enabled: bool = True) -> Iterator[None]:
    """Silence (``enabled=True``) or re-enable every :func:`progress_bar` created inside the block."""
    token = _QUIET.set(enabled)
    try:
        yield
    finally:
        _QUIET.reset(token)


def is_quiet() -> bool:
    """True inside :func:`quiet` or when ``XMC_QUIET`` is set to ``1`` / ``true`` / ``yes``."""
    return _QUIET.get() or os.environ.get("XMC_QUIET", "").strip().lower() in ("1", "true", "yes")


class _LineWriter:
    """A file for tqdm that turns each in-place refresh (``\\r...``) into one plain line."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.last = ""

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line and line != self.last:  # close() repeats the final refresh
            self.stream.write(line + "\n")
            self.last = line

    def flush(self) -> None:
        self.stream.flush()


class _PlainBar(_plain_tqdm):
    """tqdm for a non-interactive stream: also prints the final line of a stage that outlasted ``delay``
    but ended before its first periodic line (tqdm alone would print nothing for it)."""

    def close(self) -> None:
        if (not self.disable and hasattr(self, "last_print_t") and self.last_print_t < self.start_t + self.delay
                and self._time() - self.start_t >= self.delay):
            self.last_print_t = self.start_t + self.delay  # counts as shown, so tqdm writes the final state
        super().close()


def _interactive(stream: IO[str]) -> bool:
    if type(stream).__module__.startswith("ipykernel"):  # a notebook: tqdm.auto draws a widget
        return True
    try:
        if not stream.isatty():
            return False
        # A terminal of width 0 (some containers' ptys) makes tqdm print nothing at all: use plain lines.
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, ValueError, OSError):  # closed, or file-like without isatty / fileno
        return False


def progress_bar(iterable: Iterable | None = None, *, desc: str | None = None, total: float | None = None,
                 disable: bool = False, delay: float = DEFAULT_DELAY, interval: float = DEFAULT_INTERVAL,
                 file: IO[str] | None = None, **kwargs) -> _plain_tqdm:
    """A tqdm bar over ``iterable`` (or a manual one, ``total`` steps, when ``iterable`` is None).

    Args:
        iterable: what to iterate; ``len(iterable)`` is the total when it has one.
        desc: the stage's name, shown first (``"TF-IDF"``, ``"layers"``, ...).
        total: the number of steps when ``iterable`` has no length (or is None).
        disable: no output (callers pass ``not progress``).
        delay: show nothing until the stage has run this many seconds.
        interval: seconds between plain lines when the output is not a terminal.
        file: where to write (default: ``sys.stderr``).
        kwargs: other tqdm options (``unit``, ``unit_scale``, ``initial``, ...).

    Returns:
        The tqdm instance: iterate it, or call ``update(n)`` / use it as a context manager.
    """
    stream = sys.stderr if file is None else file
    disable = bool(disable) or is_quiet()
    if _interactive(stream):
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, disable=disable, delay=delay, file=stream, **kwargs)
    if total is None and iterable is not None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except (TypeError, AttributeError):
            total = None
    kwargs.setdefault("bar_format", _PLAIN_FORMAT if total else _PLAIN_FORMAT_NO_TOTAL)
    return _PlainBar(iterable, desc=desc, total=total, disable=disable, delay=delay, file=_LineWriter(stream),
                     mininterval=interval, ascii=True, dynamic_ncols=False, **kwargs)
