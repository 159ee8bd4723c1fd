"""Ingress dialects: OpenAI, Anthropic, Ollama, plus the admin and ops routes."""
