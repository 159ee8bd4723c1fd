"""Provider type -> class. Adding a provider: its module, one line here, tests, docs."""
from __future__ import annotations

from gatehouse.providers.anthropic import AnthropicProvider
from gatehouse.providers.base import Provider
from gatehouse.providers.echo import EchoProvider
from gatehouse.providers.openai import OpenAIProvider

PROVIDERS: dict[str, type[Provider]] = {
    "openai": OpenAIProvider,
    "echo": EchoProvider,
    "anthropic": AnthropicProvider,
}
