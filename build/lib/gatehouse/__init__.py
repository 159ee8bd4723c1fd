"""Gatehouse: a private LLM gateway."""

__version__ = "0.1.0"
