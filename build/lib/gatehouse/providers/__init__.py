"""Egress translators, one module per upstream type; `registry.PROVIDERS` maps type -> class."""
