"""Suite validation names the field at fault; a promptfoo config imports into the same suite."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gatehouse.evals.promptfoo import from_promptfoo
from gatehouse.evals.suite import SuiteError, load_suite, parse_suite

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("suite", "message"), [
    ({"models": ["m"], "cases": [{"prompt": "x", "assert": [{"type": "contains-everything"}]}]},
     "assert[0].type"),
    ({"models": ["m"], "cases": [{"prompt": "x", "assert": [{"type": "contains"}]}]}, "'contains' needs a 'value'"),
    ({"cases": [{"prompt": "x"}]}, "has no models"),
    ({"models": ["m"], "cases": [{"prompt": "x", "messages": [{"role": "user", "content": "y"}]}]},
     "exactly one of"),
    ({"models": ["m"], "cases": [{"prompt": "x", "assert": [{"type": "llm-rubric", "value": "good"}]}]},
     "needs a judge model"),
    ({"models": ["m"], "cases": [{"prompt": "x", "assert": [{"type": "regex", "value": "("}]}]}, "invalid regex"),
    ({"models": ["m"], "cases": [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}]}, "duplicate case ids"),
    ({"models": ["m"], "cases": [{"prompt": "x", "colour": "red"}]}, "colour"),
])
def test_invalid_suites_are_refused_naming_the_field(suite: dict[str, Any], message: str) -> None:
    with pytest.raises(SuiteError) as info:
        parse_suite(suite)
    assert message in str(info.value)


def test_the_shipped_example_suites_load() -> None:
    suites = sorted((ROOT / "examples" / "evals").glob("*.yaml"))
    assert len(suites) >= 5
    for path in suites:
        if path.name.startswith("promptfoo"):
            from_promptfoo(yaml.safe_load(path.read_text()))
        else:
            assert load_suite(path).cases


def test_promptfoo_config_imports_prompts_providers_tests_and_asserts() -> None:
    config = {
        "description": "pf",
        "prompts": ["Say {{word}}", {"raw": "Repeat {{word}}"}],
        "providers": ["openai:chat:qwen-coder", {"id": "openai:llama", "config": {"apiBaseUrl": "http://x/v1"}}],
        "defaultTest": {"assert": [{"type": "latency", "threshold": 5000}],
                        "options": {"provider": "openai:chat:judge"}},
        "tests": [
            {"vars": {"word": "hi"}, "assert": [{"type": "icontains", "value": "HI"},
                                                {"type": "javascript", "value": "output.length > 1"},
                                                {"type": "llm-rubric", "value": "friendly", "threshold": 0.7}]},
            {"description": "refuses", "vars": {"word": "secret"}, "assert": [{"type": "is-refusal"}],
             "metadata": {"category": "safety"}},
        ],
    }
    suite, warnings = from_promptfoo(config)
    assert suite.models == ["qwen-coder", "llama"]
    assert suite.judge is not None and suite.judge.model == "judge"
    assert [c.id for c in suite.cases] == ["test-1-prompt-1", "test-1-prompt-2", "test-2-prompt-1", "test-2-prompt-2"]
    first = suite.cases[0]
    assert first.prompt == "Say {{word}}" and first.vars == {"word": "hi"}
    assert [a.type for a in first.asserts] == ["latency-ms", "icontains", "llm-rubric"]
    assert first.asserts[0].value == 5000 and first.asserts[2].threshold == 0.7
    assert suite.cases[2].category == "safety" and [a.type for a in suite.cases[2].asserts] == ["latency-ms", "refusal"]
    assert warnings == ["skipped assertion type 'javascript' (not supported)"]


def test_promptfoo_providers_that_are_not_openai_compatible_are_refused() -> None:
    with pytest.raises(SuiteError, match="not OpenAI-compatible"):
        from_promptfoo({"prompts": ["x"], "providers": ["anthropic:messages:claude"], "tests": [{}]})
