"""Provider type -> class. Adding a provider: its module, one line here, tests, docs.

Modules are imported on first use, so a gateway loads only the provider code (and the
libraries behind it, e.g. botocore for bedrock) that its configuration names.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib import import_module

from gatehouse.providers.base import Provider

_CLASSES: dict[str, str] = {
    "openai": "gatehouse.providers.openai:OpenAIProvider",
    "echo": "gatehouse.providers.echo:EchoProvider",
    "anthropic": "gatehouse.providers.anthropic:AnthropicProvider",
    "bedrock": "gatehouse.providers.bedrock:BedrockProvider",
    "gemini": "gatehouse.providers.gemini:GeminiProvider",
    "ollama": "gatehouse.providers.ollama:OllamaProvider",
}


class _Registry(Mapping[str, type[Provider]]):
    def __init__(self, paths: dict[str, str]):
        self._paths = paths
        self._loaded: dict[str, type[Provider]] = {}

    def __getitem__(self, type_name: str) -> type[Provider]:
        cls = self._loaded.get(type_name)
        if cls is None:
            module, _, name = self._paths[type_name].partition(":")
            cls = self._loaded[type_name] = getattr(import_module(module), name)
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


PROVIDERS: Mapping[str, type[Provider]] = _Registry(_CLASSES)
