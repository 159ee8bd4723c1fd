"""Provider type -> class. Adding a provider: its module, one line here, tests, docs."""
from __future__ import annotations

from gatehouse.providers.anthropic import AnthropicProvider
from gatehouse.providers.base import Provider
from gatehouse.providers.bedrock import BedrockProvider
from gatehouse.providers.echo import EchoProvider
from gatehouse.providers.gemini import GeminiProvider
from gatehouse.providers.ollama import OllamaProvider
from gatehouse.providers.openai import OpenAIProvider

PROVIDERS: dict[str, type[Provider]] = {
    "openai": OpenAIProvider,
    "echo": EchoProvider,
    "anthropic": AnthropicProvider,
    "bedrock": BedrockProvider,
    "gemini": GeminiProvider,
    "ollama": OllamaProvider,
}
