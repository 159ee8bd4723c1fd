"""Which models a consumer may use. Glob patterns are expanded once, at load time."""
from __future__ import annotations

from fnmatch import fnmatchcase


def expand(patterns: list[str], model_names: list[str]) -> frozenset[str] | None:
    """The set of model names matched by the patterns; None when '*' allows everything."""
    if "*" in patterns:
        return None
    return frozenset(n for n in model_names if any(fnmatchcase(n, p) for p in patterns))
