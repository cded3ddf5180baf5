"""The declared dependencies match the code: each is imported by the package, and torch's floor covers what it calls."""

import ast
import re
from importlib.metadata import packages_distributions
from pathlib import Path

MODULES = Path(__file__).resolve().parents[2] / "modules"


def _declared() -> dict[str, str]:
    """Normalized distribution name -> requirement, from modules/pyproject.toml's `dependencies`."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    project = tomllib.loads((MODULES / "pyproject.toml").read_text())["project"]
    return {re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", r).group()).lower(): r for r in project["dependencies"]}


def _imported_top_level_names() -> set[str]:
    names = set()
    for path in (MODULES / "weightspace").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_declared_dependency_is_imported():
    dists = packages_distributions()  # import name -> installed distributions providing it
    used = {re.sub(r"[-_.]+", "-", d).lower() for name in _imported_top_level_names() for d in dists.get(name, [])}
    unused = sorted(r for name, r in _declared().items() if name not in used)
    assert not unused, f"declared in modules/pyproject.toml but imported nowhere in weightspace: {unused}; drop them"


def test_torch_floor_covers_fused_adam_on_cpu():
    # torch.optim.Adam(..., fused=True) runs on a CPU from torch 2.4 on; older versions raise at construction
    uses_fused = any("fused=True" in p.read_text() for p in (MODULES / "weightspace").rglob("*.py"))
    floor = re.search(r">=\s*(\d+)\.(\d+)", _declared()["torch"])
    assert floor, "modules/pyproject.toml must give torch a floor (torch>=X.Y)"
    assert not uses_fused or (int(floor[1]), int(floor[2])) >= (2, 4), \
        f"the code asks for fused Adam, which needs torch>=2.4 on a CPU, but the floor is {_declared()['torch']!r}"
