"""Guardrails (docs/guardrails.md): named policies of checks on prompts and answers."""
