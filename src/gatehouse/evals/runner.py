"""Run a suite through the gateway: every (model, case) with bounded concurrency and retries.

Requests go to the gateway's own OpenAI routes with a consumer key, so an eval passes through the
same access rules, limits, guardrails, routing and ledger as any user's request.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from gatehouse.evals.assertions import Check, Outcome, evaluate
from gatehouse.evals.suite import Case, Suite, fill

TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
JUDGE_PROMPT = (
    "You grade an AI assistant's answer against a rubric. Reply with only a JSON object: "
    '{"pass": true or false, "score": a number from 0 to 1, "reason": "one sentence"}.\n\n'
    "Rubric: {{rubric}}\n\nAnswer to grade:\n{{output}}"
)


@dataclass
class CaseResult:
    model: str
    case_id: str
    category: str
    weight: float
    passed: bool
    score: float
    checks: list[Check]
    outcome: Outcome

    @property
    def status(self) -> str:
        """passed | failed | error (no answer from the gateway at all)."""
        if self.outcome.status == 0:
            return "error"
        return "passed" if self.passed else "failed"


@dataclass
class RunOptions:
    base_url: str
    key: str
    concurrency: int = 4
    retries: int = 2
    timeout_s: float = 120.0
    retry_base_s: float = 0.25
    models: list[str] | None = None  # only these models (of the suite's)
    on_result: Callable[[CaseResult], None] | None = None


@dataclass
class Job:
    model: str
    case: Case


@dataclass
class Run:
    results: list[CaseResult] = field(default_factory=list)
    started_at: float = 0.0
    duration_s: float = 0.0


def plan(suite: Suite, models: list[str] | None) -> list[Job]:
    jobs = []
    for case in suite.cases:
        for model in case.models or suite.models:
            if models is None or model in models:
                jobs.append(Job(model, case))
    return jobs


def request_for(suite: Suite, job: Job) -> tuple[str, dict[str, Any]]:
    """(path, body) of the OpenAI request for one case on one model."""
    case, v = job.case, job.case.vars
    body: dict[str, Any] = {"model": job.model}
    max_tokens = case.max_tokens or suite.defaults.max_tokens
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if suite.defaults.temperature is not None:
        body["temperature"] = suite.defaults.temperature
    if case.fim is not None:
        body.update(prompt=fill(case.fim.prompt, v), suffix=fill(case.fim.suffix, v))
        return "/v1/completions", body
    if case.prompt is not None:
        body["messages"] = [{"role": "user", "content": fill(case.prompt, v)}]
    else:
        body["messages"] = [{"role": m.role, "content": fill(m.content, v)} for m in case.messages or ()]
    if case.tools:
        body["tools"] = case.tools
    if case.tool_choice is not None:
        body["tool_choice"] = case.tool_choice
    return "/v1/chat/completions", body


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return raw
    return raw


def outcome_from(status: int, headers: dict[str, str], payload: Any, latency_ms: float, attempts: int) -> Outcome:
    out = Outcome(status, latency_ms=latency_ms, headers=headers, attempts=attempts)
    cost = headers.get("x-gatehouse-cost-usd")
    if cost is not None:
        try:
            out.cost_usd = float(cost)
        except ValueError:
            pass
    if not isinstance(payload, dict):
        return out
    if not out.ok:
        err = payload.get("error")
        if isinstance(err, dict):
            out.error_type, out.error_message = err.get("type"), err.get("message")
            out.error_code = err.get("code") if isinstance(err.get("code"), str) else None
        return out
    choice = (payload.get("choices") or [{}])[0]
    out.finish_reason = choice.get("finish_reason")
    if "message" in choice:
        msg = choice["message"] or {}
        out.text = msg.get("content") or ""
        out.tool_calls = [{"name": c.get("function", {}).get("name", ""),
                           "arguments": _arguments(c.get("function", {}).get("arguments"))}
                          for c in msg.get("tool_calls") or ()]
    else:
        out.text = choice.get("text") or ""
    return out


class EvalClient:
    """One HTTP session to the gateway, with retries of transient failures."""

    def __init__(self, opts: RunOptions):
        self.opts = opts
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> EvalClient:
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.opts.timeout_s),
            headers={"authorization": f"Bearer {self.opts.key}", "user-agent": "gatehouse-eval"})
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    async def send(self, path: str, body: dict[str, Any]) -> Outcome:
        assert self.session is not None
        url = self.opts.base_url.rstrip("/") + path
        attempts = 0
        while True:
            attempts += 1
            started = time.monotonic()
            delay = self.opts.retry_base_s * 2 ** (attempts - 1)
            try:
                async with self.session.post(url, json=body) as resp:
                    raw = await resp.read()
                    latency = (time.monotonic() - started) * 1000
                    headers = {k.lower(): v for k, v in resp.headers.items()}
                    if resp.status in TRANSIENT_STATUS and attempts <= self.opts.retries:
                        delay = _retry_after(headers, delay)
                        await asyncio.sleep(delay)
                        continue
                    try:
                        payload = json.loads(raw) if raw else None
                    except ValueError:
                        payload = None
                    return outcome_from(resp.status, headers, payload, latency, attempts)
            except (TimeoutError, aiohttp.ClientError, ConnectionError) as e:
                if attempts <= self.opts.retries:
                    await asyncio.sleep(delay)
                    continue
                kind = "timeout" if isinstance(e, asyncio.TimeoutError) else type(e).__name__
                return Outcome(0, latency_ms=(time.monotonic() - started) * 1000, attempts=attempts,
                               error_type="transport", error_code=kind,
                               error_message=f"no answer after {attempts} attempts ({kind})")


def _retry_after(headers: dict[str, str], default: float) -> float:
    try:
        return min(max(float(headers.get("retry-after", "")), 0.0), 10.0)
    except ValueError:
        return default


def _judge_score(text: str) -> tuple[float, str]:
    start, end = text.find("{"), text.rfind("}")
    try:
        verdict = json.loads(text[start:end + 1]) if start >= 0 else None
    except ValueError:
        verdict = None
    if not isinstance(verdict, dict):
        return 0.0, "the judge's answer was not JSON"
    score = verdict.get("score")
    if not isinstance(score, (int, float)) or isinstance(score, bool):
        score = 1.0 if verdict.get("pass") is True else 0.0
    return max(0.0, min(1.0, float(score))), str(verdict.get("reason", ""))[:200]


async def run_case(client: EvalClient, suite: Suite, job: Job) -> CaseResult:
    path, body = request_for(suite, job)
    out = await client.send(path, body)

    async def grade(rubric: str, output: str) -> tuple[float, str]:
        assert suite.judge is not None
        prompt = fill(suite.judge.prompt or JUDGE_PROMPT, {"rubric": rubric, "output": output})
        verdict = await client.send("/v1/chat/completions", {
            "model": suite.judge.model, "temperature": 0,
            "messages": [{"role": "user", "content": prompt}]})
        if not verdict.ok:
            return 0.0, f"the judge did not answer (HTTP {verdict.status})"
        return _judge_score(verdict.text)

    checks = [await evaluate(a, out, grade) for a in job.case.asserts]
    if checks:
        total = sum(c.weight for c in checks) or 1.0
        score = sum(c.score * c.weight for c in checks) / total
        passed = all(c.passed for c in checks)
    else:  # no assertions: the case passes when the model answered
        passed, score = out.ok, 1.0 if out.ok else 0.0
    return CaseResult(job.model, job.case.id, job.case.category, job.case.weight, passed, score, checks, out)


async def run_suite(suite: Suite, opts: RunOptions) -> Run:
    jobs = plan(suite, opts.models)
    run = Run(started_at=time.time())
    began = time.monotonic()
    gate = asyncio.Semaphore(max(1, opts.concurrency))

    async with EvalClient(opts) as client:
        async def one(job: Job) -> CaseResult:
            async with gate:
                result = await run_case(client, suite, job)
            if opts.on_result is not None:
                opts.on_result(result)
            return result

        run.results = list(await asyncio.gather(*(one(j) for j in jobs)))
    run.duration_s = time.monotonic() - began
    return run
