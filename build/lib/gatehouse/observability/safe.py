"""Describe an unexpected exception for a log line without a stack trace or its message.

Exception messages from HTTP and database drivers carry internal URLs, hosts and sometimes
credentials, and tracebacks carry locals' reprs in some formatters; neither may reach a log.
The exception's type and the innermost frame inside gatehouse are enough to find the bug.
Our own exception types (defined in gatehouse modules) carry messages written for people
and free of secrets, so theirs is kept.
"""
from __future__ import annotations

import os
import traceback


def describe(exc: BaseException) -> str:
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if f"{os.sep}gatehouse{os.sep}" in frame.filename:
            where = f" at {frame.filename.rsplit(os.sep + 'gatehouse' + os.sep, 1)[1]}:{frame.lineno} in {frame.name}"
            break
    own = type(exc).__module__.startswith("gatehouse")
    message = f": {exc}" if own and str(exc) else ""
    return f"{type(exc).__name__}{message}{where}"
