"""Metrics (Prometheus), structured access logs, safe descriptions of errors."""
