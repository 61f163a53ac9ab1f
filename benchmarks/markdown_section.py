"""Replace one marked block of BENCHMARKS.md, leaving the rest of the file as it is.

Every benchmark script owns the block between ``<!-- bench_NAME:start -->`` and
``<!-- bench_NAME:end -->``; text outside the markers (hand-written readings) is kept.
"""

from __future__ import annotations

import os
import shlex
import sys

BENCHMARKS_MD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "BENCHMARKS.md")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def invocation() -> str:
    """This script's command line as a reader reruns it from the repository root: the line a
    benchmark records beside its figures."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), _ROOT)
    return "OMP_WAIT_POLICY=PASSIVE .venv/bin/python " + " ".join(shlex.quote(a) for a in [script] + sys.argv[1:])


def markers(name: str) -> tuple[str, str]:
    """The start and end markers of block ``name``."""
    return f"<!-- bench_{name}:start -->", f"<!-- bench_{name}:end -->"


def read_section(name: str, path: str | os.PathLike = BENCHMARKS_MD) -> str | None:
    """The body :func:`write_section` put between block ``name``'s markers (None when absent)."""
    start, end = markers(name)
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    i, j = text.find(start), text.find(end)
    if i == -1 or j < i:
        return None
    return text[i + len(start) + 1:j - 1]  # write_section puts one newline on each side of the body


def write_section(name: str, body: str, title: str, path: str | os.PathLike = BENCHMARKS_MD) -> None:
    """Put ``body`` between block ``name``'s markers in ``path``.

    When the markers are missing the block is appended under ``## title`` (the file is
    created when absent). The file is written to a temporary name and renamed, so a
    crash never leaves it half-written.
    """
    start, end = markers(name)
    block = f"{start}\n{body}\n{end}"
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmarks\n"
    i, j = text.find(start), text.find(end)
    if i != -1 and j > i:
        text = text[:i] + block + text[j + len(end):]
    else:
        text = text.rstrip("\n") + f"\n\n## {title}\n\n{block}\n"
    tmp = f"{os.fspath(path)}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def subsections(body: str | None) -> dict[str, str]:
    """The ``### heading`` subsections of a section body, in order: heading line -> its text (heading
    included, up to the next ``### `` line). Text before the first heading is not a subsection."""
    parts: dict[str, str] = {}
    heading, lines = None, []
    for line in (body or "").split("\n") + ["### "]:
        if line.startswith("### "):
            if heading is not None:
                parts[heading] = "\n".join(lines).strip("\n")
            heading, lines = line, []
        lines.append(line)
    return parts


def keep_missing_subsections(body: str, previous: str | None) -> str:
    """``body`` followed by each subsection of ``previous`` whose heading ``body`` lacks.

    A script that rebuilds its block from the result files at hand uses this so that tables whose
    files are not there (run on another machine, or lost) stay as they were written."""
    have = subsections(body)
    kept = [text for heading, text in subsections(previous).items() if heading not in have]
    return "\n\n".join([body.rstrip("\n")] + kept) if kept else body
