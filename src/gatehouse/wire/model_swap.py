"""Put the public model name back into bodies relayed without translation.

A deployment's upstream id (`Qwen/Qwen3-Coder-32B-Instruct`) is internal: clients asked for
the public name and must get it back. Relayed bodies are not decoded, so the swap is a byte
replace of the exact `"model":"<upstream id>"` token, built once per deployment at load
(`for_deployment`), and only for deployments whose id differs from the public name. A relay
applies it to complete frames or lines only, so a token is never cut between two reads.
"""
from __future__ import annotations

from gatehouse.types import json_encode


class ModelSwap:
    __slots__ = ("more", "new", "new_spaced", "old", "old_spaced")

    def __init__(self, upstream_model: str, public_model: str):
        up, pub = json_encode(upstream_model), json_encode(public_model)
        # Compact JSON (vLLM, llama.cpp, TGI, Ollama, OpenAI) and Python's default separators.
        self.old, self.new = b'"model":' + up, b'"model":' + pub
        self.old_spaced, self.new_spaced = b'"model": ' + up, b'"model": ' + pub
        more: list[tuple[bytes, bytes]] = []
        if b"/" in up:  # encoders that escape the slash (PHP, some Java ones)
            escaped = up.replace(b"/", b"\\/")
            more = [(b'"model":' + escaped, self.new), (b'"model": ' + escaped, self.new_spaced)]
        self.more = tuple(more)

    def apply(self, data: bytes) -> bytes:
        # One upstream writes its JSON one way: the first variant that matched is the only one
        # (bytes.replace returns the very same object when nothing matched).
        out = data.replace(self.old, self.new)
        if out is not data:
            return out
        out = data.replace(self.old_spaced, self.new_spaced)
        if out is not data or not self.more:
            return out
        for old, new in self.more:
            out = out.replace(old, new)
        return out


def for_deployment(public_model: str, upstream_model: str) -> ModelSwap | None:
    """The swap a deployment's relayed replies need, or None when the names are the same."""
    return None if upstream_model == public_model else ModelSwap(upstream_model, public_model)
