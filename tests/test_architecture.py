"""The import directions of ARCHITECTURE.md, checked on the source (imports under
``if TYPE_CHECKING:`` are annotations and do not count; imports inside functions do)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PARTS = {
    "base": {"_checks", "batch", "commands", "jsonable", "partitions", "outputs", "interrupts"},
    "maths": {"likelihoods", "likelihoods.base", "likelihoods.isotropic", "likelihoods.niw", "exact", "subset_dp", "data.sets"},
    "engine": {"nn", "nn.encoders", "nn.energy", "policy", "decoding", "fused_decoding", "background", "losses", "flows", "objectives", "tabulate",
               "metrics"},
    "pyro": {"distributions", "distributions.amortized", "distributions.constraints", "distributions.crp",
             "distributions.lazy_grad", "distributions.marginal", "distributions.provenance", "models", "guides",
             "guide_cache", "infer", "mcmc", "reward", "scale"},
    "training": {"config", "sections", "data", "data.augment", "data.embeddings", "data.image_sets", "data.images",
                 "data.kinds", "data.points", "data.pools", "data.sources", "train", "checkpoint", "evaluation", "fidelity",
                 "loading", "pretrained", "__version__"},
    "interface": {"cli", "figures", "__main__"},
}
ALLOWED = {
    "base": {"base"},
    "maths": {"base", "maths"},
    "engine": {"base", "maths", "engine"},
    "pyro": {"base", "maths", "engine", "pyro"},
    "training": {"base", "maths", "engine", "pyro", "training"},
    "interface": {"base", "maths", "engine", "pyro", "training", "interface"},
}
LOADER = {"loading", "config", "checkpoint", "pretrained", "__version__", "nn", "nn.encoders", "nn.energy"}
"""The one back edge: the Pyro guide loads checkpoints (``GFNCPGuide.from_pretrained``)."""


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT / "gfncp_pyro").with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(tree: ast.AST):
    """Import nodes, skipping ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _package_imports(path: Path) -> set[str]:
    """The gfncp_pyro modules that ``path`` imports at runtime (names relative to the package)."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    if name == "":
        package = []
    out = set()
    for node in _runtime_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            targets = [".".join(base + node.module.split("."))] if node.module else [
                ".".join(base + [alias.name]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            targets = [node.module] if node.module.startswith("gfncp_pyro") else []
            targets = [t.removeprefix("gfncp_pyro").lstrip(".") for t in targets]
        else:
            targets = [a.name.removeprefix("gfncp_pyro").lstrip(".") for a in node.names
                       if a.name.startswith("gfncp_pyro")]
        out.update(t for t in targets if t)
    return out


def _part_of(module: str) -> str:
    for part, members in PARTS.items():
        if module in members:
            return part
    raise AssertionError(f"gfncp_pyro.{module} is in no part of ARCHITECTURE.md; add it there and to PARTS")


SOURCES = sorted(p for p in (ROOT / "gfncp_pyro").rglob("*.py") if _module_name(p))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: _module_name(p))
def test_imports_follow_the_allowed_directions(path):
    module = _module_name(path)
    part = _part_of(module)
    for target in sorted(_package_imports(path)):
        target_part = _part_of(target)
        if target_part in ALLOWED[part] or (part == "pyro" and target in LOADER):
            continue
        raise AssertionError(f"gfncp_pyro.{module} ({part}) imports gfncp_pyro.{target} ({target_part}); "
                             f"ARCHITECTURE.md allows {part} -> {sorted(ALLOWED[part])}")


def test_the_maths_core_imports_neither_pyro_nor_the_network():
    for path in SOURCES:
        if _part_of(_module_name(path)) in ("base", "maths"):
            text = path.read_text()
            assert "import pyro" not in text and "from pyro" not in text, path


def test_nothing_below_the_interface_imports_the_cli():
    for path in SOURCES:
        if _part_of(_module_name(path)) != "interface":
            assert "cli" not in _package_imports(path), path


MAX_FUNCTION_LINES = 80


@pytest.mark.parametrize("folder", ["gfncp_pyro", "validation"])
def test_no_function_is_longer_than_80_lines(folder):
    """Issue 13's rule: long functions are split into named helpers (docstrings included)."""
    long = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = node.end_lineno - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({size} lines)")
    assert not long, long
