"""The layout's rules, read from the source (every import, also those inside functions):

- `training/` and `service/` each build on `segsvc/`; `segsvc/` imports neither, and `training/` never imports
  `service/` (the model-store commands are the service's: `segsvc-bento`);
- inside `segsvc/` the sub-packages import only downwards: io < models < data < runtime < evaluation;
- no module of the project takes part in an import circle;
- nothing outside `tests/` imports from it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("segsvc", "training", "service")  # what is installed (training/ as segsvc.training, service/ as segsvc.service)
CONSUMERS = ("tests", "benchmarks", "scripts", "docs/examples")  # what only uses it
SUBPACKAGES = ("io", "models", "data", "runtime", "evaluation")  # segsvc's, lowest first
MAY_IMPORT = {"segsvc": set(), "training": {"segsvc"}, "service": {"segsvc"}}


def module_name(path: Path) -> str:
    """The name the code imports a module by: training/ is `segsvc.training` (one installed root); service/'s
    modules import each other relatively, so theirs is the folder's name as `bentoml serve` loads it."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if parts[0] == "training":
        parts.insert(0, "segsvc")
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    modules = {}
    for top in PACKAGES + CONSUMERS:
        for path in sorted((ROOT / top).rglob("*.py")):
            modules[module_name(path)] = path
    return modules


MODULES = source_modules()


def imported(name: str, path: Path) -> set[str]:
    """The project modules `path` imports: `import a.b`, `from a import b` (b a module or a name in a), relative
    imports, and a project module's name given whole as a string (`importlib.import_module`, PEP 562 tables)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in MODULES:
            targets.add(node.value)
    return {target for target in targets if target in MODULES and target != name}


GRAPH = {name: imported(name, path) for name, path in MODULES.items()}


def top(name: str) -> str:
    if name == "segsvc.training" or name.startswith("segsvc.training."):
        return "training"
    return "docs/examples" if name.startswith("docs.") else name.split(".")[0]


def subpackage(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "segsvc" and len(parts) > 2 and parts[1] in SUBPACKAGES else None


def test_the_graph_is_read_from_real_imports():
    """The check itself: it sees imports inside functions, relative ones, and `from package import module`."""
    assert "segsvc.runtime.predict" in GRAPH["segsvc"]  # module level
    assert "segsvc.models.serialization" in GRAPH["segsvc"]  # PEP 562 table of names -> modules
    assert "segsvc.models.serialization" in GRAPH["segsvc.runtime.torch_engine"]  # inside a function
    assert "segsvc.training.module" in GRAPH["segsvc.training.cli"]
    assert all(sub in {name.split(".")[1] for name in MODULES if subpackage(name)} for sub in SUBPACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_build_on_segsvc_one_way(package):
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if top(name) == package
        for target in targets
        if top(target) != package and top(target) not in MAY_IMPORT[package]
    )
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_from_tests():
    wrong = sorted(f"{name} imports {target}" for name, targets in GRAPH.items() if top(name) != "tests" for target in targets if top(target) == "tests")
    assert not wrong, "\n".join(wrong)


def test_segsvc_subpackages_import_only_downwards():
    wrong = []
    for name, targets in GRAPH.items():
        if top(name) != "segsvc" or name == "segsvc":
            continue
        if "segsvc" in targets:  # the package's front door is above every part of it
            wrong.append(f"{name} imports segsvc")
        here = subpackage(name)
        level = SUBPACKAGES.index(here) if here else len(SUBPACKAGES)
        wrong += [f"{name} ({here}) imports {t} ({subpackage(t)})" for t in targets if subpackage(t) and SUBPACKAGES.index(subpackage(t)) > level]
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_circles():
    """Depth-first search over the installed packages' modules; the first circle found is named in full."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = "open"
        path.append(name)
        for target in sorted(GRAPH[name]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (circle := visit(target)):
                return circle
        state[name] = "done"
        path.pop()
        return None

    for name in sorted(n for n in GRAPH if top(n) in PACKAGES):
        if name not in state and (circle := visit(name)):
            pytest.fail("import circle: " + " -> ".join(circle))


def test_the_public_api_stays_at_the_top():
    """What users import from `segsvc` itself is there after the move (the torch part on first use)."""
    import segsvc

    for name in segsvc.__all__:
        assert callable(getattr(segsvc, name)), name
    assert {"build_model", "load_model", "save_model", "predict", "predict_mask", "load_runtime"} <= set(segsvc.__all__)
