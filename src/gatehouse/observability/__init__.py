"""Metrics (Prometheus), structured access logs."""
