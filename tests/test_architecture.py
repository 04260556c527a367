"""The layout rules of docs/architecture.md that a machine can check."""

import ast
from pathlib import Path

from lib import paths

LIB = paths.ROOT / "lib"
MAX_LINES = 500
DATA_MODULES = {"lib.paper"}  # the paper's tables: data, not code


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(LIB.rglob("*.py")):
        parts = f.relative_to(paths.ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _imports(name: str, f: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported lib module, line, inside a function) for every import of a lib module."""
    tree = ast.parse(f.read_text())
    package = name if f.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            targets = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(up + ([child.module] if child.module else []))
                targets = [f"{base}.{a.name}" for a in child.names] + [base]
            resolved = set()
            for t in targets:
                while t and t not in known:
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("lib"):
                    resolved.add(t)
            if len(resolved) > 1:
                resolved.discard("lib")  # `from lib import a, b`: the modules, not the package
            found.extend((t, child.lineno, in_function) for t in sorted(resolved))
            visit(child, inside)

    visit(tree, False)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    graph = {}
    for name, f in mods.items():
        deps = {t for t, _, _ in _imports(name, f, known)}
        # a package's submodules import through the package: that is not a cycle
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    return graph


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(n):
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                walk(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            walk(n)


def test_function_level_lib_imports_say_why():
    """An import of a lib module inside a function needs a comment on its line or within the
    three lines above saying which heavy dependency it defers."""
    mods = _modules()
    bad = []
    for name, f in mods.items():
        lines = f.read_text().split("\n")
        for target, lineno, in_function in _imports(name, f, set(mods)):
            if in_function and "#" not in "".join(lines[max(0, lineno - 4):lineno]):
                bad.append(f"{f.relative_to(paths.ROOT)}:{lineno} imports {target}")
    assert not bad, "function-level lib imports without a reason:\n" + "\n".join(bad)


def test_modules_stay_small():
    big = {n: len(f.read_text().split("\n")) for n, f in _modules().items()}
    big = {n: k for n, k in big.items() if k > MAX_LINES and n not in DATA_MODULES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_architecture_doc_names_every_module():
    doc = (paths.DOCS_DIR / "architecture.md").read_text()
    top = {f.stem for f in LIB.glob("*.py")} - {"__init__"}
    missing = sorted(m for m in top if f"{m}.py" not in doc)
    assert not missing, f"docs/architecture.md does not describe {missing}"
