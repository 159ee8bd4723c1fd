"""The config package's layering: schema.py is a leaf, and every module that check.py imports
can be imported first (no import cycle through the package)."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", ["schema", "schema_base", "schema_policy", "schema_routing"])
def test_the_schema_is_a_leaf(module):
    """config/schema*.py import nothing from gatehouse but each other, so every module can import them."""
    tree = ast.parse((ROOT / f"src/gatehouse/config/{module}.py").read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert imported and not [m for m in imported if m.split(".")[0] == "gatehouse"
                             and not m.startswith("gatehouse.config.schema")]


# Each module first, in a clean import state: a cycle through gatehouse.config shows up as an
# ImportError from a half-initialised module. One throwaway interpreter, since the loop drops
# gatehouse's modules between rounds (the test process must keep its own).
FIRST = """
import importlib, sys
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "gatehouse" or m.startswith("gatehouse.")]:
        del sys.modules[loaded]
    importlib.import_module(name)
    from gatehouse.config import from_mapping
    from_mapping({}, {})
print("ok")
"""
MODULES = ["gatehouse.config.schema", "gatehouse.config.schema_policy", "gatehouse.config.schema_routing",
           "gatehouse.routing.checks", "gatehouse.config.check", "gatehouse.config.loader",
           "gatehouse.policy.limits_config", "gatehouse.policy.guardrails.config", "gatehouse.tls",
           "gatehouse.metering.pricing", "gatehouse.providers.base", "gatehouse.runtime"]


@pytest.mark.process  # clean import states are the subject
def test_every_module_check_imports_can_be_imported_first():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-c", FIRST, *MODULES], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
