"""The package's rooms import only rooms below them (top-level and lazy imports alike), as the README's
architecture section lists them; no module imports itself back through others; the package root holds few
modules; importing `weightspace` loads neither ray, matplotlib nor umap."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "modules" / "weightspace"

# lowest first; a module may import its own room and any room before it
ROOMS = ["core", "io", "layout", "zoo", "formats", "data", "representation", "downstream", "report", "pipeline",
         "edge"]
SPECIAL = {"errors": "core", "layout": "layout", "layout_check": "layout", "cli": "edge"}
ROOT_MODULES = 5  # at most this many modules beside __init__.py at the package root; the rest live in rooms


def room_of(module: str) -> str:
    """The room of a dotted module name below ``weightspace``."""
    parts = module.split(".")[1:]
    for depth in (2, 1):
        key = ".".join(parts[:depth])
        if key in SPECIAL:
            return SPECIAL[key]
    return parts[0]


def module_name(path: Path) -> str:
    """The dotted name of a file of the package (a package's ``__init__.py`` is the package)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(("weightspace",) + (parts[:-1] if parts[-1] == "__init__" else parts))


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, *, type_checking: bool = True) -> list[tuple[str, int]]:
    """(weightspace module, line) of every import in the file, wherever it stands (inside functions too).

    ``from weightspace.zoo import store`` names the module ``weightspace.zoo.store``; ``import weightspace`` and
    ``from weightspace import X`` name the package's face, ``weightspace``. With ``type_checking=False``, imports
    under ``if TYPE_CHECKING:`` (annotations only, never run) are left out.
    """
    tree = ast.parse(path.read_text(), str(path))
    skipped = set()
    if not type_checking:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "weightspace":
            found += [(_submodule(node.module, a.name), node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "weightspace"]
    return list(dict.fromkeys(found))


def _submodule(module: str, name: str) -> str:
    """What ``from module import name`` imports: the submodule ``module.name`` if there is one, else `module`."""
    return f"{module}.{name}" if f"{module}.{name}" in MODULES else module


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` (module -> the modules it imports) as [a, b, ..., a], or None where there is none."""
    state, stack = {}, []  # state: 1 while on the current path, 2 when every path from it is done

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_every_room_is_listed():
    rooms = {room_of(module) for module in MODULES if module != "weightspace"}
    assert rooms <= set(ROOMS), rooms


def test_no_import_runs_back_up():
    upward = []
    for module, path in MODULES.items():
        if module == "weightspace":
            continue  # the package's face re-exports the layout and the zoo's model registry
        own = ROOMS.index(room_of(module))
        for target, line in imports(path):
            if target == "weightspace":
                continue  # the package itself (its version, its face) belongs to no room
            if ROOMS.index(room_of(target)) > own:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} ({room_of(module)}) imports {target} "
                              f"({room_of(target)})")
    assert not upward, "\n".join(upward)


def test_no_module_imports_itself_back():
    """Follow every import between the package's modules, lazy ones and those under TYPE_CHECKING too: no module
    may come back to itself, else which one loads first decides what works (and a circle through annotations
    only is still two modules that each need the other to be read)."""
    graph = {module: {target for target, _ in imports(path) if target in MODULES} - {module}
             for module, path in MODULES.items()}
    cycle = import_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}; move what both need into a module both import"


def test_the_package_root_holds_few_modules():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(loose) <= ROOT_MODULES, (f"{len(loose)} modules at the package root ({', '.join(loose)}); "
                                        f"at most {ROOT_MODULES}: move the rest into the room they serve")


@pytest.mark.slow  # a fresh interpreter
def test_importing_the_package_loads_no_heavy_optional_library():
    code = ("import sys, weightspace, weightspace.downstream, weightspace.representation; "
            "print(sorted(m for m in ('ray', 'matplotlib', 'umap', 'pooch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
