"""The import graph of the two packages has no cycle, imports inside functions included."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_graph(packages=("gradinv", "sudl")):
    """{module: the package's modules it imports}, read from the source (every ``import`` statement,
    at any depth); ``from a import b`` counts as importing ``a.b`` where that is a module, else ``a``."""
    files = {}
    for pkg in packages:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = f.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    graph = {}
    for name, f in files.items():
        package = name.split(".") if f.name == "__init__.py" else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                deps.update(f"{target}.{a.name}" if f"{target}.{a.name}" in files else target for a in node.names)
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    graph = module_graph()
    assert "gradinv.pipeline" in graph["gradinv.models"]  # the graph is read, relative imports resolved
    assert cycles(graph) == []


def test_the_attack_imports_without_the_client_simulation_extra():
    """scikit-image is an optional extra (``cases``): ``import gradinv`` and ``invert_layer`` need neither it nor
    the client simulation (:mod:`gradinv.cases`)."""
    import subprocess
    import sys

    code = ("import sys, gradinv; gradinv.invert_layer; from gradinv.models import attack_model; "
            "assert not any(m == 'skimage' or m.startswith('skimage.') for m in sys.modules), 'skimage imported'; "
            "assert 'gradinv.cases' not in sys.modules, 'the client simulation imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_without_scikit_image_the_simulated_clients_say_how_to_install_it(monkeypatch):
    import sys

    import pytest

    from gradinv.cases import data

    monkeypatch.setitem(sys.modules, "skimage.data", None)  # as if scikit-image were not installed
    data.grey_images.cache_clear()
    with pytest.raises(ImportError, match=r"pip install 'spearkit\[cases\]'"):
        data.grey_images()
    data.grey_images.cache_clear()
