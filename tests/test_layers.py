"""The package's rooms import only rooms below them (top-level and lazy imports alike), as the README's
architecture section lists them; importing `weightspace` loads neither ray, matplotlib nor umap."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "modules" / "weightspace"

# lowest first; a module may import its own room and any room before it
ROOMS = ["core", "io", "layout", "zoo", "formats", "data", "representation", "downstream", "report", "pipeline",
         "edge"]
SPECIAL = {"errors": "core", "devices": "core", "activations": "core", "layout": "layout",
           "layout_check": "layout", "cli": "edge", "cli_errors": "edge", "pipeline.cli": "edge"}


def room_of(module: str) -> str:
    """The room of a dotted module name below ``weightspace``."""
    parts = module.split(".")[1:]
    for depth in (2, 1):
        key = ".".join(parts[:depth])
        if key in SPECIAL:
            return SPECIAL[key]
    return parts[0]


def imports(path: Path) -> list[tuple[str, int]]:
    """(weightspace module, line) of every import in the file, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("weightspace."):
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("weightspace.")]
    return found


def test_every_room_is_listed():
    rooms = {room_of("weightspace." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts))
             for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE}
    assert rooms - {"__init__"} <= set(ROOMS), rooms


def test_no_import_runs_back_up():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE and path.name == "__init__.py":
            continue  # the package's face re-exports the layout and the zoo's model registry
        module = "weightspace." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        own = ROOMS.index(room_of(module))
        for target, line in imports(path):
            if ROOMS.index(room_of(target)) > own:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} ({room_of(module)}) imports {target} "
                              f"({room_of(target)})")
    assert not upward, "\n".join(upward)


@pytest.mark.slow  # a fresh interpreter
def test_importing_the_package_loads_no_heavy_optional_library():
    code = ("import sys, weightspace, weightspace.downstream, weightspace.representation; "
            "print(sorted(m for m in ('ray', 'matplotlib', 'umap', 'pooch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
