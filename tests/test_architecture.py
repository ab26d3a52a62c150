"""The house rules of ``runners/`` (its ``__init__``): rooms by where code runs, imports that run one way, no import
circles, Ray and MLflow imported only where they run.  Read from the source (every import, lazy ones included);
nothing of the project is run."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
ORDER = ["spec", "plan", "worker", "engine", "cli"]
"""``cli → engine → worker → plan → spec``: a room may import the rooms before it in this list."""
PACKAGES = ("sobolev", "runners", "analysis")


def _modules():
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(name, path):
    """(imported module, line, at module level) of every import of a project module or of ray / mlflow."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [base]
        else:
            continue
        for target in targets:
            yield target, node.lineno, id(node) in top


def room(module: str):
    """``runners.engine.sweep`` → ``engine``; ``analysis.report`` → ``analysis``; ``sobolev.x`` → ``sobolev``."""
    parts = module.split(".")
    if parts[0] == "runners":
        return parts[1] if len(parts) > 1 else "runners"
    return parts[0]


def allowed(source: str, target: str) -> bool:
    if source == target or target in ("sobolev", "store"):
        return source != "sobolev" or target == "sobolev"
    if source == "store":
        return False
    if source == "analysis":
        return target in ("plan", "spec", "analysis")
    if source == "cli" and target == "analysis":  # the command line calls the report
        return True
    if source in ORDER and target in ORDER:
        return ORDER.index(target) < ORDER.index(source)
    return False


def test_the_rule_itself_refuses_upward_and_sideways_imports():
    assert allowed("engine", "worker") and allowed("cli", "spec") and allowed("worker", "store")
    assert not allowed("worker", "engine") and not allowed("plan", "worker") and not allowed("spec", "plan")
    assert not allowed("store", "spec") and not allowed("analysis", "engine") and not allowed("sobolev", "runners")
    assert allowed("cli", "analysis") and not allowed("engine", "analysis") and allowed("analysis", "plan")
    assert room("runners.engine.sweep") == "engine" and room("analysis.collect") == "analysis"


def test_every_runners_module_lives_in_a_room():
    loose = [p.name for p in (ROOT / "runners").glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules outside the rooms: {loose}"
    rooms = {p.name for p in (ROOT / "runners").iterdir() if (p / "__init__.py").is_file()}
    assert rooms == {*ORDER, "store"}, rooms


def test_imports_run_one_way():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        source = room(name)
        if source == "runners":
            continue
        for target, line, _ in _imports(name, path):
            if target.split(".")[0] not in PACKAGES:
                continue
            if not allowed(source, room(target)):
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({source}) imports {target} ({room(target)})")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("library", ["ray", "mlflow"])
def test_ray_and_mlflow_are_imported_only_where_they_run(library):
    """The library never imports them; outside the engine, the worker and the store's tracker they are imported
    inside the functions that use them, so ``plan``, ``report`` and ``--help`` do not pay for them."""
    where = {"ray": {"engine", "worker", "cli"}, "mlflow": {"store", "engine", "worker", "cli", "analysis"}}[library]
    wrong = []
    for name, path in _modules().items():
        for target, line, top in _imports(name, path):
            if target.split(".")[0] != library:
                continue
            source = room(name)
            if source not in where or (top and name != "runners.engine.tune_events"):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target}{' at module level' if top else ''}")
    assert not wrong, "\n".join(wrong)


def test_no_import_circles():
    """Tarjan's strongly connected components over the module graph (the tool in ../shared/tools does the same)."""
    modules = _modules()

    def owner(target):
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target

    edges = {}
    for name, path in modules.items():
        targets = set()
        for target, _, _ in _imports(name, path):
            found = owner(target)
            if found and found != name and not name.startswith(found + ".") and not (
                    path.name == "__init__.py" and found.startswith(name + ".")):
                targets.add(found)
        edges[name] = targets
    index, low, stack, on, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    assert not circles, circles
