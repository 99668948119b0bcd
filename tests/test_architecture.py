"""The package's folders import one way, with no circle and no hidden import (README's module map)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tutorial_utils"
# Lowest first: a module may import its own folder and the folders before it, never one after it.
LAYERS = ["setup", "modeling", "data", "evaluation", "storage", "methods", "study", "production", "tools"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _target(name: str, path: Path, node: ast.ImportFrom, imported: str) -> str | None:
    """The package module an ``from ... import imported`` statement loads (None when outside the package)."""
    if node.level:
        base = name.split(".") if _is_package(path) else name.split(".")[:-1]
        base = [b for b in base if b]
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        module = ".".join(base + ([node.module] if node.module else []))
    elif node.module and (node.module == "tutorial_utils" or node.module.startswith("tutorial_utils.")):
        module = node.module[len("tutorial_utils"):].lstrip(".")
    else:
        return None
    candidate = f"{module}.{imported}".strip(".")
    return candidate if candidate in MODULES else module


def _imports(name: str, path: Path) -> list[tuple[str, int, bool, bool]]:
    """(target module, line, inside a function, under ``if TYPE_CHECKING``) for each import of the package."""
    found = []

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            checking = type_checking or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, ast.ImportFrom):
                for alias in child.names:
                    target = _target(name, path, child, alias.name)
                    if target is not None:
                        found.append((target, child.lineno, in_function, checking))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("tutorial_utils."):
                        found.append((alias.name[len("tutorial_utils."):], child.lineno, in_function, checking))
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, inner, checking)

    visit(ast.parse(path.read_text()), False, False)
    return found


def _layer(module: str) -> int | None:
    head = module.split(".")[0]
    return LAYERS.index(head) if head in LAYERS else None


def test_every_module_lives_in_a_folder_of_the_map():
    loose = [m for m in MODULES if m and m != "__main__" and _layer(m) is None]
    assert not loose, f"modules outside the folders {LAYERS}: {loose}; move each into the folder of its job"
    assert set(LAYERS) <= {m.split(".")[0] for m in MODULES}, "a folder of the map is missing"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) is not None))
def test_folders_import_one_way(module):
    path = MODULES[module]
    upward = [f"line {line}: {target}" for target, line, _, _ in _imports(module, path)
              if _layer(target) is not None and _layer(target) > _layer(module)]
    assert not upward, (f"{module} ({LAYERS[_layer(module)]}) imports a later folder: {upward}; "
                        f"the order is {' < '.join(LAYERS)}: move the shared code down instead")


def test_no_import_circle():
    edges = {m: {t for t, *_ in _imports(m, p) if t != m} for m, p in MODULES.items()}
    for module in MODULES:  # a package's __init__ is loaded before its modules: count it as their parent
        if "." in module:
            edges[module].discard(module.rsplit(".", 1)[0])
    seen: dict[str, int] = {}  # 1: on the current path, 2: done
    circles = []

    def walk(module: str, path: list[str]) -> None:
        seen[module] = 1
        for target in sorted(edges.get(module, ())):
            if seen.get(target) == 1:
                circles.append(path[path.index(target):] + [target])
            elif target not in seen:
                walk(target, path + [target])
        seen[module] = 2

    for module in MODULES:
        if module not in seen:
            walk(module, [module])
    assert not circles, f"import circles: {circles}"


def test_no_hidden_imports():
    """No ``TYPE_CHECKING`` import of the package; a lazy one only in ``tools``, each with its reason."""
    problems = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        for target, line, in_function, type_checking in _imports(module, path):
            if type_checking:
                problems.append(f"{module} line {line}: {target} under TYPE_CHECKING")
            elif in_function and not module.startswith("tools."):
                problems.append(f"{module} line {line}: {target} imported inside a function")
            elif in_function and "# lazy" not in lines[line - 1]:
                problems.append(f"{module} line {line}: lazy import of {target} without a '# lazy: reason' comment")
    assert not problems, problems


def test_nothing_imports_tools():
    users = [f"{m} -> {t}" for m, p in MODULES.items() if not m.startswith("tools") and m != "__main__"
             for t, *_ in _imports(m, p) if t.startswith("tools")]
    assert not users, f"only python -m tutorial_utils (__main__) may import tools: {users}"
