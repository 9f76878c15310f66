"""Imports point down the pipeline: every import of a package module is checked against the layers that
docs/architecture.md draws, no module imports itself back in a circle, and only the CLI knows argparse."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "src" / "yolocompress"


def _layers() -> dict[str, int]:
    """{package or top-level module: layer} from the block between the layer markers of architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"<!-- layers -->\s*```\n(.*?)```\s*<!-- /layers -->", text, re.S)
    assert block, "docs/architecture.md lost its layer table (<!-- layers --> ... <!-- /layers -->)"
    layers = {}
    for line in block.group(1).splitlines()[1:]:
        level, *names = line.split()
        layers.update({n: int(level) for n in names})
    return layers


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[str]:
    """Every yolocompress module `path` imports, at module level or inside functions (lazy imports too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("yolocompress"):
                out.append(mod)
                out += [f"{mod}.{a.name}" for a in node.names]  # `from . import methods` imports a module
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("yolocompress")]
    return out


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _unit(module: str) -> str:
    """The layer unit of a module: its subpackage, or the top-level module itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_import_points_down_the_layers():
    layers = _layers()
    modules = _modules()
    bad, unknown = [], set()
    for name, path in modules.items():
        src = _unit(name)
        if src in ("__init__", "__main__"):
            continue
        for mod in _imports(path):
            if mod not in modules:
                continue  # `from .x import Name` also lists x.Name
            dst = _unit(mod)
            if dst == src or dst == "__init__":
                continue
            unknown |= {u for u in (src, dst) if u not in layers}
            if src in layers and dst in layers and not layers[dst] < layers[src]:
                bad.append(f"{name} imports {mod} ({src} is layer {layers[src]}, {dst} layer {layers[dst]})")
    assert not unknown, f"packages missing from docs/architecture.md's layer table: {sorted(unknown)}"
    assert not bad, "imports that do not point down:\n" + "\n".join(bad)


def test_no_import_cycle():
    modules = _modules()
    graph = {n: sorted({m for m in _imports(p) if m in modules and m != n}) for n, p in modules.items()}
    state, stack, cycles = {}, [], []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in graph[n]:
            if state.get(m) == "open":
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = "done"

    for n in graph:
        if n not in state:
            visit(n)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_only_the_cli_knows_argparse():
    users = [n for n, p in _modules().items() if not n.startswith("yolocompress.cli")
             and re.search(r"^\s*(import argparse|from argparse import)", p.read_text(), re.M)]
    assert users == []
