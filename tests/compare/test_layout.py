"""The package's modules import on their own, without cycles, and the report side stays
free of the engine (which pulls in MONAI)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import medseg.compare

PACKAGE = Path(medseg.compare.__file__).parent
#: modules that read runs and write reports: no engine, no MONAI
LIGHT = ["spec", "stats", "grad_stats", "plots", "report", "results", "planning", "tuning", "tuning_report"]
HEAVY = ["grad_recorder", "execution", "worker", "tuning_run"]

# Each module is imported into an empty stand-in for the package (its __init__ would import
# everything), after every medseg.compare module was dropped: a cycle hidden in the order of
# imports shows up as an ImportError.
FRESH_IMPORTS = """
import importlib, json, sys, types
import medseg

def fresh(name):
    for key in [key for key in sys.modules if key.startswith("medseg.compare")]:
        del sys.modules[key]
    package = types.ModuleType("medseg.compare")
    package.__path__ = [{package!r}]
    sys.modules["medseg.compare"] = package
    importlib.import_module("medseg.compare." + name)

for name in {light!r}:
    fresh(name)
heavy = sorted(m for m in ("medseg.engine", "medseg.data", "monai") if m in sys.modules)
for name in {heavy!r}:
    fresh(name)
for key in [key for key in sys.modules if key.startswith("medseg.compare")]:
    del sys.modules[key]
import medseg.compare
print(json.dumps(heavy))
"""


def test_every_module_imports_alone_and_the_report_side_skips_the_engine():
    code = FRESH_IMPORTS.format(package=str(PACKAGE), light=LIGHT, heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_no_imports_inside_functions():
    assert {path.stem for path in PACKAGE.glob("*.py")} == {"__init__", *LIGHT, *HEAVY}
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                nested = [node for node in ast.walk(function)
                          if isinstance(node, (ast.Import, ast.ImportFrom))]
                assert not nested, f"{path.name}: {function.name} imports inside the function"
