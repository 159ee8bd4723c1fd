"""Evals: run suites of prompts with assertions through the gateway (`gatehouse eval`)."""
