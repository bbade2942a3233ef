"""The package's own import graph, read from the source text (no module is imported).

Every `import` statement that can run counts, at module level or inside a function (a lazy import is still a
dependency); imports under `if TYPE_CHECKING:` only serve annotations and do not. A call
``importlib.import_module(...)`` counts too: with a literal name, as that module; with a name built from a literal
prefix (``f"dualmd.attacks.{name}"``), as every module under that prefix, since any of them may be the one run.
Two uses:

- a workflow rule lists the files of its stage module's import `closure` as inputs, so editing
  a module reruns exactly the stages that run it;
- a test checks that the graph has no cycle.

An import by a name built at run time picks one plugin (an attack: `dualmd.catalog.AttackSpec.module_name`) out of
many. A job runs only the plugin it names, so the workflow reads the graph without those edges
(`import_graph(plugins=False)`) and adds the closure of the plugin each job names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def module_files(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package rooted at `package_dir`."""
    root = package_dir.name
    files = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join([root, *parts])] = path
    return files


def _is_package(module: str, files: Mapping[str, Path]) -> bool:
    return files[module].name == "__init__.py"


def _resolve(current: str, node: ast.ImportFrom, files: Mapping[str, Path]) -> str:
    if node.level == 0:
        return node.module or ""
    base = current.split(".")
    if not _is_package(current, files):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterable[ast.AST]:
    """Every node except the bodies of `if TYPE_CHECKING:` blocks (imports for annotations never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        children = list(ast.iter_child_nodes(node))
        if _is_type_checking(node):
            children = [c for c in children if c not in node.body]  # type: ignore[attr-defined]
        stack.extend(children)


def _dynamic_import(node: ast.AST) -> tuple[str, bool] | None:
    """(name, False) for ``importlib.import_module("name")``, (prefix, True) for an f-string name that starts with
    a literal prefix, else None."""
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "import_module"
        and node.args
    ):
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value, False
    if isinstance(arg, ast.JoinedStr) and arg.values:
        first = arg.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value:
            return first.value, True
    return None


def direct_imports(module: str, files: Mapping[str, Path], plugins: bool = True) -> set[str]:
    """Modules of the package that `module` imports by name (parents of a dotted name not included); without
    `plugins`, a name built from a literal prefix counts as no module."""
    tree = ast.parse(files[module].read_text(), filename=str(files[module]))
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        dynamic = _dynamic_import(node)
        if dynamic is not None:
            name, is_prefix = dynamic
            if not is_prefix:
                found.add(name)
            elif plugins:
                found.update(m for m in files if m.startswith(name))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node, files)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in files else source)
    return {name for name in found if name in files and name != module}


def import_graph(package_dir: Path = PACKAGE_DIR, plugins: bool = True) -> dict[str, set[str]]:
    """Module -> the package modules it imports directly (`plugins`: see `direct_imports`)."""
    files = module_files(package_dir)
    return {module: direct_imports(module, files, plugins) for module in files}


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def closure(graph: Mapping[str, set[str]], start: str) -> set[str]:
    """Every module that runs when `start` is imported: its imports, theirs, and the packages above each."""
    if start not in graph:
        raise ValueError(f"{start!r} is not a module of the package; known: {sorted(graph)}")
    seen: set[str] = set()
    frontier = [start]
    while frontier:
        module = frontier.pop()
        if module in seen:
            continue
        seen.add(module)
        frontier.extend(graph[module])
        frontier.extend(p for p in _parents(module) if p in graph)
    return seen


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan): each is an import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found
