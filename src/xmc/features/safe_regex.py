"""Refuse regular expressions that can backtrack exponentially (ReDoS).

A token pattern travels inside a model directory, and Python's ``re`` has no timeout, so a
pattern such as ``(a|aa)+$`` from someone else's model could stall ``xmc predict`` for hours on a
short document. RE2 would bound the time, but its ``\\w`` is ASCII-only and would change the
tokens of the default pattern, so instead the pattern's parse tree is checked for the shapes that
backtrack exponentially: a repetition of something that itself repeats or alternates, and
backreferences. No maintained library does this check for Python's dialect, hence this module.
"""

from __future__ import annotations

import re

try:  # Python >= 3.11
    from re import _constants as _c
    from re import _parser as _sre_parse
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT} | ({_c.POSSESSIVE_REPEAT} if hasattr(_c, "POSSESSIVE_REPEAT") else set())
_MAX_UNBOUNDED_REPEATS = 4


def regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` is refused (invalid, or able to backtrack exponentially), or None when it is fine."""
    try:
        re.compile(pattern)
        tree = _sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"invalid regular expression ({exc})"
    unbounded = [0]

    def repeats_or_branches(items) -> bool:
        for op, av in items:
            if op in _REPEATS and av[1] > 1:
                return True
            if op is _c.BRANCH:
                return True
            if _walk_children(op, av, repeats_or_branches):
                return True
        return False

    def check(items) -> str | None:
        for op, av in items:
            if op in (_c.GROUPREF, _c.GROUPREF_EXISTS):
                return "backreferences can backtrack exponentially"
            if op in _REPEATS and av[1] > 1:
                if av[1] == _c.MAXREPEAT:
                    unbounded[0] += 1
                if repeats_or_branches(av[2]):
                    return "a repeated group that itself repeats or alternates can backtrack exponentially"
            problem = _walk_children(op, av, check)
            if problem:
                return problem
        return None

    problem = check(tree)
    if problem is None and unbounded[0] > _MAX_UNBOUNDED_REPEATS:
        problem = f"more than {_MAX_UNBOUNDED_REPEATS} unbounded repetitions can backtrack polynomially"
    return problem


def _walk_children(op, av, visit):
    """Apply ``visit`` to the sub-patterns of one parse-tree node; the first truthy result."""
    if op is _c.SUBPATTERN:
        return visit(av[-1])
    if op in _REPEATS:
        return visit(av[2])
    if op is _c.BRANCH:
        for branch in av[1]:
            result = visit(branch)
            if result:
                return result
    if op in (_c.ASSERT, _c.ASSERT_NOT):
        return visit(av[1])
    if hasattr(_c, "ATOMIC_GROUP") and op is _c.ATOMIC_GROUP:
        return visit(av)
    return None
