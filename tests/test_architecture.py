"""The layout's rules, read from the code's own imports (every import, also inside functions).

Arrows point down: web → promotions → environments → projects → core. A
lower layer asks a higher one for work through a signal or a task named by
its dotted path, never by importing it. Product code never imports the
sandbox or the tests, benchmarks never import the tests, and only the two
client modules speak to clusters and registries.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["core", "projects", "environments", "promotions", "web"]
RANK = {name: rank for rank, name in enumerate(LAYERS)}
# The wiring above every layer (settings, URL confs) may import any of them.
WIRING = {"config"}
CLIENTS = {"kubernetes": "promotions/kube.py", "httpx": "promotions/registry.py"}


def imports_of(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, dotted module) for every import in the file, relative ones resolved."""
    module = ".".join(path.relative_to(root).with_suffix("").parts)
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
                # `from . import x`: x may be a module of the package.
                found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names] if not node.module else []
                found.append((node.lineno, name))
            else:
                found.append((node.lineno, node.module))
    return found


def python_files(*tops: str) -> list[Path]:
    return sorted(p for top in tops for p in (ROOT / top).rglob("*.py") if "migrations" not in p.parts)


def test_imports_point_down():
    upward = []
    for path in python_files(*LAYERS):
        own = path.relative_to(ROOT).parts[0]
        for line, name in imports_of(path):
            top = name.split(".")[0]
            if top in RANK and RANK[top] > RANK[own]:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {name} ({own} is below {top})")
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_product_code_never_imports_the_sandbox_or_the_tests():
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in python_files(*LAYERS, *WIRING)
        for line, name in imports_of(path)
        if name.split(".")[0] in {"sandbox", "tests", "bench"}
    ]
    assert not wrong, "\n".join(wrong)


def test_benchmarks_never_import_the_tests():
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in python_files("bench")
        for line, name in imports_of(path)
        if name.split(".")[0] == "tests"
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("library, owner", sorted(CLIENTS.items()))
def test_only_the_client_module_talks_to(library, owner):
    users = sorted(
        str(path.relative_to(ROOT))
        for path in python_files(*LAYERS, *WIRING)
        if any(name.split(".")[0] == library for _, name in imports_of(path))
    )
    assert users == [owner]


def test_the_walker_sees_imports_inside_functions(tmp_path):
    # The circle this test guards against was held together by imports inside functions.
    (tmp_path / "environments").mkdir()
    sample = tmp_path / "environments" / "sample.py"
    sample.write_text("def f():\n    from promotions import tasks\n    from . import rules\n    import httpx\n")
    found = imports_of(sample, root=tmp_path)
    assert (2, "promotions") in found and (3, "environments.rules") in found and (4, "httpx") in found
