"""Layering runs one way (docs/architecture.md): no module imports from a layer above its own, so no package-level
import cycle can form. Imports inside functions count too: they are dependencies all the same."""

from __future__ import annotations

import ast
from pathlib import Path

import quantlab

ROOT = Path(quantlab.__file__).parent
# Bottom to top; the core is quantlab's top-level modules (errors, atomic, layout, manifest, ...).
LAYERS = ["core", "models", "runtime", "check", "export", "calibration", "quantize", "compile", "bundle",
          "evaluate", "analyze", "report", "lab", "sweep", "api", "cli"]


def _unit(module: str) -> str:
    if module == "quantlab.__init__":  # the package's public re-exports sit with the API
        return "api"
    parts = module.split(".")
    if parts[0] != "quantlab" or len(parts) == 1:
        return "core"
    return parts[1] if parts[1] in LAYERS else "core"


def _imports(path: Path) -> set[str]:
    module = "quantlab." + ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level] if not path.name == "__init__.py" else module.split(".")
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("quantlab.")}


def test_every_package_has_a_layer():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert packages <= set(LAYERS), packages - set(LAYERS)


def test_imports_only_go_down():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        mine = _unit("quantlab." + ".".join(path.relative_to(ROOT).with_suffix("").parts))
        for target in _imports(path):
            theirs = _unit(target)
            if LAYERS.index(theirs) > LAYERS.index(mine):
                wrong.append(f"{path.relative_to(ROOT)} ({mine}) imports {target} ({theirs})")
    assert not wrong, "imports that go up a layer:\n" + "\n".join(wrong)


def test_no_cycle_among_core_modules():
    """The core modules (one layer) must not import each other in a circle either."""
    core = {p.stem for p in ROOT.glob("*.py") if p.stem not in ("__init__", "api", "cli")}
    edges = {m: {t.split(".")[1] for t in _imports(ROOT / f"{m}.py")} & core - {m} for m in core}
    seen, stack = set(), []

    def visit(m: str) -> None:
        if m in stack:
            raise AssertionError("import cycle: " + " → ".join(stack[stack.index(m):] + [m]))
        if m in seen:
            return
        stack.append(m)
        for t in edges[m]:
            visit(t)
        stack.pop()
        seen.add(m)

    for m in sorted(core):
        visit(m)
