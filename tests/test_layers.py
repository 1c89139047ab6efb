"""medseg's packages stand on floors: a module imports only from lower floors (or its own
package), at module level or inside a function. Data flows one way: config -> data ->
model -> engine -> checkpoint -> evaluate/app, with the CLI and the app as thin tops."""

from __future__ import annotations

import ast
from pathlib import Path

import medseg

PACKAGE = Path(medseg.__file__).parent

#: top-level module or subpackage of medseg -> its floor (lower floors know nothing above)
FLOORS: dict[str, int] = {
    "errors": 0,
    "__init__": 1, "lazy": 1, "files": 1, "paths": 1,
    "locks": 2, "metrics": 2, "optim": 2,
    "postprocessing": 3, "runs": 3, "tasks": 3,
    "config": 4,
    "imaging": 5,
    "data": 6,
    "demo": 7,
    "models": 8,
    "analysis": 9,
    "engine": 10,
    "predict": 11,
    "export": 12,
    "compare": 13,
    "app": 14, "cv": 14,
    "cli": 15, "healthcheck": 15,
    "__main__": 16,
}


def _unit(path: Path) -> str:
    relative = path.relative_to(PACKAGE).with_suffix("")
    return relative.parts[0]


def _imported_units(tree: ast.AST) -> set[str]:
    units = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = node.module.split(".")
            if names[0] == "medseg":
                units.add(names[1] if len(names) > 1 else "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names = alias.name.split(".")
                if names[0] == "medseg" and len(names) > 1:
                    units.add(names[1])
    return units


def test_every_package_has_a_floor():
    units = {_unit(path) for path in PACKAGE.rglob("*.py")}
    assert sorted(units - set(FLOORS)) == []


def test_no_module_imports_from_its_own_floor_s_neighbours_or_above():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = _unit(path)
        for imported in _imported_units(ast.parse(path.read_text())) - {unit}:
            if FLOORS[imported] >= FLOORS[unit]:
                upward.append(f"{path.relative_to(PACKAGE)} ({unit}, floor {FLOORS[unit]}) "
                              f"imports {imported} (floor {FLOORS[imported]})")
    assert upward == []
