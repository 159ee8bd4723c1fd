"""An eval suite: cases (a chat, a fill-in-the-middle prompt or a tool-use task) with assertions.

The file is YAML, decoded once into typed structs (msgspec), so a typo in an assertion type or a
case field is an error naming the field, before any request is sent. Variables are substituted
as plain `{{name}}` text: no template engine, nothing evaluated.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

AssertionType = Literal[
    "equals", "contains", "not-contains", "icontains", "not-icontains", "regex", "not-regex",
    "is-json", "json-schema", "tool-call", "latency-ms", "cost", "refusal", "not-refusal",
    "guardrail-blocked", "not-guardrail-blocked", "header", "llm-rubric", "model-graded",
]


class SuiteError(Exception):
    """The suite file is unreadable or invalid; the message names the field."""


class Assertion(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    type: AssertionType
    value: Any = None
    threshold: float | None = None  # llm-rubric / model-graded: the judge's minimum score (0..1)
    weight: float = 1.0
    name: str | None = None  # header: the response header to check (value is a regex)


class Fim(msgspec.Struct, forbid_unknown_fields=True):
    prompt: str
    suffix: str = ""


class ChatMessage(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str


class Case(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, rename={"asserts": "assert"}):
    id: str = ""
    description: str = ""
    category: str = "default"
    weight: float = 1.0
    prompt: str | None = None  # shorthand for one user message
    messages: list[ChatMessage] | None = None
    fim: Fim | None = None
    tools: list[dict[str, Any]] | None = None  # OpenAI tool definitions
    tool_choice: Any = None
    vars: dict[str, Any] = msgspec.field(default_factory=dict)
    models: list[str] | None = None  # overrides the suite's models for this case
    max_tokens: int | None = None
    asserts: list[Assertion] = msgspec.field(default_factory=list)


class Judge(msgspec.Struct, forbid_unknown_fields=True):
    model: str
    prompt: str | None = None  # overrides the built-in grading prompt; {{rubric}} and {{output}} are filled


class Defaults(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    max_tokens: int | None = None
    temperature: float | None = None


class Suite(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    cases: list[Case]
    description: str = ""
    models: list[str] = msgspec.field(default_factory=list)
    threshold: float = 0.0  # the lowest weighted pass ratio a model may have; below it the run fails
    judge: Judge | None = None
    defaults: Defaults = msgspec.field(default_factory=Defaults)


_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def fill(text: str, variables: dict[str, Any]) -> str:
    """Replace `{{name}}` by the variable's text; an unknown name is left as written."""
    return _VAR.sub(lambda m: str(variables[m.group(1)]) if m.group(1) in variables else m.group(0), text)


def parse_suite(data: Any, where: str = "suite") -> Suite:
    try:
        suite = msgspec.convert(data, Suite)
    except msgspec.ValidationError as e:
        raise SuiteError(f"{where}: {e}") from None
    for i, case in enumerate(suite.cases):
        shapes = sum(x is not None for x in (case.prompt, case.messages, case.fim))
        if shapes != 1:
            raise SuiteError(f"{where}: cases[{i}] needs exactly one of 'prompt', 'messages' or 'fim'")
        if not case.id:
            case.id = f"case-{i + 1}"
        if not (case.models or suite.models):
            raise SuiteError(f"{where}: cases[{i}] ({case.id}) has no models: set 'models' in the suite or case")
        for j, a in enumerate(case.asserts):
            _check_assertion(a, f"{where}: cases[{i}].assert[{j}]", suite)
    ids = [c.id for c in suite.cases]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise SuiteError(f"{where}: duplicate case ids: {', '.join(dupes)}")
    if not 0.0 <= suite.threshold <= 1.0:
        raise SuiteError(f"{where}: threshold must be between 0 and 1")
    return suite


def _check_assertion(a: Assertion, where: str, suite: Suite) -> None:
    needs_value = {"equals", "contains", "not-contains", "icontains", "not-icontains", "regex", "not-regex",
                   "json-schema", "tool-call", "latency-ms", "cost", "header", "llm-rubric", "model-graded"}
    if a.type in needs_value and a.value is None:
        raise SuiteError(f"{where}: '{a.type}' needs a 'value'")
    if a.type in ("regex", "not-regex", "header"):
        try:
            re.compile(str(a.value))
        except re.error as e:
            raise SuiteError(f"{where}: invalid regex: {e}") from None
    if a.type == "header" and not a.name:
        raise SuiteError(f"{where}: 'header' needs 'name' (the header) and 'value' (a regex)")
    if a.type in ("latency-ms", "cost") and not isinstance(a.value, (int, float)):
        raise SuiteError(f"{where}: '{a.type}' needs a number")
    if a.type == "tool-call" and not (isinstance(a.value, str) or isinstance(a.value, dict) and "name" in a.value):
        raise SuiteError(f"{where}: 'tool-call' needs a tool name or {{name, arguments}}")
    if a.type in ("llm-rubric", "model-graded") and suite.judge is None:
        raise SuiteError(f"{where}: '{a.type}' needs a judge model: set 'judge: {{model: ...}}' in the suite")


def load_suite(path: str | Path) -> Suite:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SuiteError(f"{path}: {e}") from None
    return parse_suite(data, str(path))
