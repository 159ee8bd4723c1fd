"""The admission estimate: chat-template overhead, and the per-deployment calibration."""
from __future__ import annotations

from gatehouse.metering.tokens import Calibration, estimate_request
from gatehouse.types import ChatRequest, Message, TextPart


def test_a_one_word_message_costs_what_chat_templates_bill() -> None:
    req = ChatRequest(model="m", messages=[Message(role="user", content=[TextPart(text="hi")])])
    assert estimate_request(req) == 11  # Llama 3 / Gemma / ChatML: 10-11 tokens


def test_calibration_rises_at_once_and_falls_back_slowly() -> None:
    cal = Calibration()
    assert cal.factor("m") == 1.0, "nothing seen: the plain estimate"
    cal.observe("m", "p/a", 10, 40)
    assert cal.factor("m") == 4.0, "one answer is enough to cover it"
    for _ in range(5):
        cal.observe("m", "p/a", 10, 10)
    assert 3.0 < cal.factor("m") < 4.0, "a high quantile: lower answers pull it down gradually"
    for _ in range(200):
        cal.observe("m", "p/a", 10, 10)
    assert cal.factor("m") < 1.01


def test_calibration_covers_every_deployment_of_a_model_and_never_lowers_the_estimate() -> None:
    cal = Calibration()
    cal.observe("m", "p/a", 10, 20)
    cal.observe("m", "p/b", 10, 5)
    assert cal.factor("m") == 2.0, "routing happens after admission: the costliest deployment counts"
    cal.observe("n", "p/c", 10, 5)
    assert cal.factor("n") == 1.0, "an estimate that was too high is kept"
    cal.observe("o", "p/d", 1, 10_000)
    assert cal.factor("o") == Calibration.MAX_FACTOR
    cal.observe("o", "p/d", 0, 10)  # nothing to compare
    assert cal.factor("o") == Calibration.MAX_FACTOR
