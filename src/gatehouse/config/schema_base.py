"""The config schema's foundations: the error type, the constrained field types and the base struct.
A leaf like the rest of the schema (config/schema.py, config/schema_policy.py): nothing from gatehouse."""
from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct


class ConfigError(Exception):
    """A config problem, message prefixed with the field path (`models[2].deployments[0]`)."""


# Constrained field types. loader.py words their msgspec errors ("must be positive", ...).
Positive = Annotated[float, Meta(gt=0)]
PositiveInt = Annotated[int, Meta(ge=1)]
NonNegative = Annotated[float, Meta(ge=0)]
NonNegativeInt = Annotated[int, Meta(ge=0)]
Deadline = Annotated[float, Meta(gt=0, le=3600)]  # seconds
HTTP_URL = r"(?i)^(?:$|https?://[^/?#\s]+)"  # empty: the type's default URL
HttpUrl = Annotated[str, Meta(pattern=HTTP_URL)]
# A pattern's rule in words, for its error message.
PATTERN_RULES = {HTTP_URL: "must be an http(s) URL"}


class _Base(Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass
