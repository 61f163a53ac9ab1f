"""Safe writes: outputs appear complete or not at all, and nothing a user has is replaced unasked.

Every output goes to a temporary sibling ``.NAME.tmp-PID-XXXX`` and is renamed onto its path
when complete. Replacing an existing directory swaps the two atomically where the OS can
(Linux ``renameat2(RENAME_EXCHANGE)``), so readers never see the path missing. Leftovers of a
write that was killed are named after the dead process and removed by the next write to the
same path.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import enum
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
from typing import Any, Callable, Iterator

import numpy as np

from .errors import OutputError

logger = logging.getLogger(__name__)

_RENAME_EXCHANGE = 2  # linux/fs.h


def _temp_stem(name: str) -> str:
    """``name`` as it appears in its temporary siblings' names: whole, or, when that would take a
    sibling's name past the file system's 255 bytes (a legal 245-byte output name failed with
    'File name too long'), its first 180 bytes and a hash of the whole name."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= 200:
        return name
    head = raw[:180].decode("utf-8", "ignore")
    return f"{head}~{hashlib.sha1(raw).hexdigest()[:12]}"


def _leftover_pattern(name: str) -> re.Pattern:
    return re.compile(rf"^\.{re.escape(_temp_stem(name))}\.(?:tmp|old)-(\d+)-")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def clean_leftovers(path: str | os.PathLike) -> list[str]:
    """Remove temporary siblings of ``path`` left by xmc writes whose process has died; return them."""
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    pattern = _leftover_pattern(name)
    removed = []
    try:
        entries = os.listdir(parent)
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            leftover = os.path.join(parent, entry)
            if os.path.isdir(leftover) and not os.path.islink(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(leftover)
            removed.append(leftover)
    if removed:
        logger.warning("removed %d leftover(s) of an interrupted write to %s: %s", len(removed), path,
                       ", ".join(os.path.basename(r) for r in removed))
    return removed


def _temp_prefix(path: str, kind: str) -> str:
    return f".{_temp_stem(os.path.basename(path))}.{kind}-{os.getpid()}-"


def _exchange(a: str, b: str) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the OS or file system cannot."""
    # Python has no binding for renameat2; glibc >= 2.28 exports it.
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


def check_parent(path: str | os.PathLike) -> None:
    """Raise :class:`OutputError` unless ``path`` can be created where it is.

    Its nearest existing ancestor must be a directory this process may write in (missing folders
    below it are created at write time): otherwise the write would fail only after all the work.
    """
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise OutputError(f"{path}: cannot be written: {parent} is {PathKind.of(parent).value}, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):  # also False on a read-only file system, even for root
        raise OutputError(f"{path}: cannot be written: the directory {parent} is not writable")
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(os.fsencode(os.path.basename(os.path.abspath(path)))) > name_max:
        raise OutputError(f"{path}: cannot be written: its name is longer than the {name_max} bytes a file name "
                          "may have here")


class PathKind(enum.Enum):
    """What is at a path; the value is how messages name it."""

    FILE = "a file"
    EMPTY_FILE = "an empty file"
    DIRECTORY = "a directory"
    LINK = "a symbolic link"
    PIPE = "a named pipe"
    DEVICE = "a device"
    SOCKET = "a socket"
    OTHER = "something"

    @classmethod
    def of(cls, path: str) -> "PathKind":
        """From ``lstat`` alone: opening a named pipe would block until a writer comes."""
        info = os.lstat(path)
        mode = info.st_mode
        if stat.S_ISREG(mode):
            return cls.FILE if info.st_size else cls.EMPTY_FILE
        for test, kind in ((stat.S_ISDIR, cls.DIRECTORY), (stat.S_ISLNK, cls.LINK), (stat.S_ISFIFO, cls.PIPE),
                           (stat.S_ISCHR, cls.DEVICE), (stat.S_ISBLK, cls.DEVICE), (stat.S_ISSOCK, cls.SOCKET)):
            if test(mode):
                return kind
        return cls.OTHER


class Marker:
    """The JSON file that tells an xmc output directory from any other folder: ``name`` in it, holding an
    object with every item of ``fields`` (another tool's folder may well have a ``manifest.json``) and,
    when given, passing ``accepts``."""

    _MAX_BYTES = 1 << 20  # markers are small; a large file of that name is someone else's

    def __init__(self, name: str, accepts: Callable[[dict], bool] | None = None, **fields: Any):
        self.name, self._accepts, self._fields = name, accepts, fields

    def found_in(self, directory: str) -> bool:
        """Whether ``directory`` (a real directory, not a link to one) holds this marker."""
        path = os.path.join(directory, self.name)
        try:
            if (PathKind.of(directory) is not PathKind.DIRECTORY or PathKind.of(path) is not PathKind.FILE
                    or os.path.getsize(path) > self._MAX_BYTES):
                return False
            with open(path, encoding="utf-8") as fh:
                content = json.load(fh)
        except (OSError, ValueError, RecursionError):
            return False
        return (isinstance(content, dict) and all(content.get(k) == v for k, v in self._fields.items())
                and (self._accepts is None or bool(self._accepts(content))))


def check_replaceable(path: str | os.PathLike, *, overwrite: bool, marker: Marker | None = None,
                      what: str = "output") -> bool:
    """Whether ``path`` exists; raise :class:`OutputError` unless it may be replaced.

    A path that exists is replaced only with ``overwrite``, and, with ``marker``, only when it is a
    directory holding that marker (e.g. an xmc model's manifest): anything else is never replaced.
    """
    path = os.fspath(path)
    check_parent(path)
    if not os.path.lexists(path):
        return False
    if marker is not None and not marker.found_in(path):
        raise OutputError(f"{path}: {PathKind.of(path).value} that is not an xmc {what} (no xmc {marker.name}) "
                          "is already there; "
                          f"refusing to replace it: choose a new path")
    if not overwrite:
        raise OutputError(f"{path}: an xmc {what} is already there; pass --overwrite (overwrite=True) to replace it")
    return True


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, overwrite: bool = False, marker: Marker | None = None,
                     what: str = "output directory") -> Iterator[str]:
    """Yield a temporary directory beside ``path``; move it to ``path`` when the block succeeds.

    An existing ``path`` is replaced only as :func:`check_replaceable` allows, and atomically where the
    OS can. On an exception the temporary directory is removed and ``path`` is left untouched.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    check_replaceable(path, overwrite=overwrite, marker=marker, what=what)
    os.makedirs(parent, exist_ok=True)
    clean_leftovers(path)
    tmp = tempfile.mkdtemp(prefix=_temp_prefix(path, "tmp"), dir=parent)
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would hide the result from everyone else
        yield tmp
        if not os.path.lexists(path):
            os.rename(tmp, path)
            return
        check_replaceable(path, overwrite=overwrite, marker=marker, what=what)  # it may have appeared meanwhile
        if _exchange(tmp, path):  # tmp now holds the old directory
            shutil.rmtree(tmp, ignore_errors=True)
            return
        old = tempfile.mkdtemp(prefix=_temp_prefix(path, "old"), dir=parent)
        os.rename(path, os.path.join(old, "x"))  # a brief moment without path where no exchange exists
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8", *,
                overwrite: bool = True) -> Iterator:
    """Open a temporary file beside ``path`` for writing; rename it over ``path`` on success.

    ``overwrite=False`` refuses an existing ``path`` (:class:`OutputError`) before anything is written.
    """
    path = os.path.abspath(os.fspath(path))
    check_parent(path)
    if os.path.lexists(path):
        if os.path.isdir(path):
            raise OutputError(f"{path}: is a directory; choose a file path")
        kind = PathKind.of(path)
        if kind not in (PathKind.FILE, PathKind.EMPTY_FILE, PathKind.LINK):  # a device or pipe is never replaced
            raise OutputError(f"{path}: {kind.value} is there, not a file; refusing to replace it: choose a new path")
        if not overwrite:
            raise OutputError(f"{path}: already exists; pass --overwrite (overwrite=True) to replace it")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    clean_leftovers(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path, "tmp"), dir=os.path.dirname(path))
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # the permissions of a plain open(), not mkstemp's 0600
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def check_not_an_input(out: str | os.PathLike, inputs: dict[str, str | os.PathLike | None]) -> None:
    """Raise :class:`OutputError` if ``out`` is, contains, or lies inside one of ``inputs`` ({option: path}).

    Writing (or replacing a directory) there would destroy data the command is reading.
    """
    target = os.path.realpath(os.fspath(out))
    for option, path in inputs.items():
        if path is None:
            continue
        source = os.path.realpath(os.fspath(path))
        if source == target or source.startswith(target.rstrip(os.sep) + os.sep):
            relation = "is" if source == target else "contains"
            raise OutputError(f"{os.fspath(out)}: the output {relation} the input {option} {os.fspath(path)}; "
                              "choose another output path")
        if os.path.isdir(source) and target.startswith(source.rstrip(os.sep) + os.sep):
            raise OutputError(f"{os.fspath(out)}: the output lies inside the input {option} {os.fspath(path)}; "
                              "choose another output path")


# What json.loads raises on text it cannot take: JSONDecodeError (a ValueError), ValueError for an
# integer of more digits than Python converts, RecursionError for arrays nested deeper than its stack.
JSON_ERRORS = (ValueError, RecursionError)


def json_problem(exc: BaseException) -> str:
    """One of :data:`JSON_ERRORS` in words (the caller names the file and line)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} (column {exc.colno})"
    if isinstance(exc, RecursionError):
        return "invalid JSON: nested too deeply"
    if "integer string conversion" in str(exc):
        return f"invalid JSON: a number of more than {sys.get_int_max_str_digits()} digits"
    return f"invalid JSON: {exc}"


def json_text(value: Any) -> str:
    """``value`` as strict JSON (indented): a number that is not finite (an empty group's precision)
    becomes null, since NaN and Infinity are not JSON and strict parsers (JavaScript's) reject them."""
    def finite(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [finite(x) for x in v]
        if isinstance(v, (float, np.floating)):
            return float(v) if np.isfinite(v) else None
        if isinstance(v, np.integer):
            return int(v)
        return v

    return json.dumps(finite(value), indent=2, allow_nan=False)


def _first_json_line(path: str) -> dict | None | bool:
    """The first non-blank line of a file as a dict; None if it is something else; False if the file is blank."""
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                if raw.strip():
                    obj = json.loads(raw.decode("utf-8"))
                    return obj if isinstance(obj, dict) else None
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return False


def jsonl_output(recognise_record: Callable[[dict], bool]) -> Callable[[str], bool]:
    """For :func:`check_file_output`: an xmc JSONL output, told by its first record. A blank file is
    not one: nothing in it says xmc wrote it."""
    def is_ours(path: str) -> bool:
        first = _first_json_line(path)
        return bool(first) and recognise_record(first)
    return is_ours


def check_file_output(path: str | os.PathLike, *, overwrite: bool, is_ours: Callable[[str], bool],
                      what: str) -> None:
    """Raise :class:`OutputError` unless ``path`` is new, or an xmc ``what`` file and ``overwrite`` is set.

    ``is_ours(path)`` tells an earlier xmc output from anything else (e.g. :func:`jsonl_output`); it is
    asked only about a non-empty regular file. Anything else (an empty file, a link, a device, a named
    pipe) is never replaced, with or without ``overwrite``.
    """
    path = os.fspath(path)
    check_parent(path)
    if not os.path.lexists(path):
        return
    if os.path.isdir(path):
        raise OutputError(f"{path}: is a directory; give a file path for the {what}")
    kind = PathKind.of(path)
    if kind is not PathKind.FILE or not is_ours(path):
        raise OutputError(f"{path}: {kind.value} that is not an xmc {what} is already there; refusing to replace it: "
                          "choose a new path")
    if not overwrite:
        raise OutputError(f"{path}: an xmc {what} is already there; pass --overwrite to replace it")
