"""The tree is the architecture: dependencies point one way, surfaces -> engine -> adapters and
ports -> core, and the core stays pure (docs/decisions.md, "The tree shows the architecture").

Every import in every module counts, also those inside functions and under ``TYPE_CHECKING``:
a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import service.lambda_handler
import service.sdk
import service.surfaces.lambda_handler
import service.surfaces.sdk

ROOT = Path(__file__).resolve().parents[2]

# The layers, lowest first. A module may import from its own layer and from lower ones only.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("service.core", "service.errors", "resolvers")),
    ("ports", ("service.ports", "service.config")),
    ("adapters", ("service.adapters",)),
    ("engine", ("service.engine",)),
    ("surfaces", ("service.surfaces", "service.lambda_handler", "service.sdk")),
)
# The package's own __init__ is the public facade over the core: it is checked as core.
FACADE = "service"

# What the pure core (service.core) never touches (STYLE.md 1): no AWS, no clock, no randomness,
# no threads, no logging side effects, no environment.
IMPURE = ("boto3", "botocore", "time", "random", "threading", "logging", "os", "socket")


def layer_of(module: str) -> int | None:
    """The rank of ``module``'s layer, or None for a module outside the project."""
    if module == FACADE:
        return 0
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, *, module: str) -> Iterator[str]:
    """Every module ``source`` imports, absolute names (relative imports resolved)."""
    package = module.rsplit(".", 1)[0] if "." in module else module
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            # `from service import cli` names a submodule: count it as one.
            yield from (f"{base}.{alias.name}" for alias in node.names)


def violations(sources: Mapping[str, str]) -> list[str]:
    """Each import that points up the layers, and each impure import in the core."""
    found = []
    for module, source in sorted(sources.items()):
        rank = layer_of(module)
        if rank is None:
            continue
        for imported in imports_of(source, module=module):
            target = layer_of(imported)
            if target is not None and target > rank:
                found.append(
                    f"{module} ({LAYERS[rank][0]}) imports {imported} ({LAYERS[target][0]})"
                )
            if module.startswith("service.core") and imported.split(".")[0] in IMPURE:
                found.append(f"{module} (core) imports {imported}: the core stays pure")
    return sorted(set(found))


def project_sources() -> dict[str, str]:
    files = [*ROOT.joinpath("service").rglob("*.py"), *ROOT.joinpath("resolvers").rglob("*.py")]
    return {module_name(path): path.read_text() for path in files}


def test_no_module_imports_from_a_higher_layer() -> None:
    assert [] == violations(project_sources())


def test_every_module_of_the_project_sits_in_a_layer() -> None:
    assert [] == [m for m in project_sources() if layer_of(m) is None]


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (
            "service.adapters.dynamo",
            "from service.engine.pipeline import Replicator",
            "service.adapters.dynamo (adapters) imports service.engine.pipeline (engine)",
        ),
        (
            "service.core.apply",
            "def f():\n    from service.ports import Table",
            "service.core.apply (core) imports service.ports (ports)",
        ),
        (
            "service.engine.consumer",
            "if TYPE_CHECKING:\n    from service.surfaces import cli",
            "service.engine.consumer (engine) imports service.surfaces.cli (surfaces)",
        ),
        (
            "service.core.stamp",
            "import time",
            "service.core.stamp (core) imports time: the core stays pure",
        ),
        (
            "service.engine.verify",
            "from ..surfaces.commands import verify",
            "service.engine.verify (engine) imports service.surfaces.commands (surfaces)",
        ),
    ],
)
def test_the_layering_check_catches_an_upward_import(
    module: str, source: str, expected: str
) -> None:
    """Teeth: each kind of upward import, written into a module, is reported."""
    assert expected in violations({module: source})


def test_the_service_package_keeps_few_modules_at_its_top() -> None:
    """Four layers and the contracts between them, not a flat list of modules."""
    top = sorted(p.name for p in ROOT.joinpath("service").glob("*.py"))
    assert [
        "__init__.py",
        "config.py",
        "errors.py",
        "lambda_handler.py",
        "ports.py",
        "sdk.py",
    ] == top
    layers = sorted(p.name for p in ROOT.joinpath("service").iterdir() if p.is_dir())
    assert {"adapters", "core", "engine", "surfaces"} <= set(layers)


def test_the_paths_deployed_stacks_and_applications_name_still_work() -> None:
    """Stacks deployed before the move name ``service.lambda_handler.handler``; applications
    import ``service.sdk.GeorepTable``."""
    assert service.surfaces.lambda_handler.handler is service.lambda_handler.handler
    assert service.surfaces.sdk.GeorepTable is service.sdk.GeorepTable


def test_every_folder_of_the_package_is_a_regular_package() -> None:
    """Lambda imports the function from its zip, and zipimport finds no namespace packages: a
    folder without ``__init__.py`` would import here and fail there."""
    folders = [
        p
        for top in ("service", "resolvers")
        for p in [ROOT / top, *ROOT.joinpath(top).rglob("*")]
        if p.is_dir() and p.name != "__pycache__" and any(p.glob("*.py"))
    ]
    assert [] == [str(p.relative_to(ROOT)) for p in folders if not (p / "__init__.py").exists()]
