"""The layers of docs/architecture.md: imports point downward only, and the pure core stays pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Package prefix -> otpcore packages it must never import.
FORBIDDEN_LAYERS = {
    "otpcore.domain": (
        "otpcore.tokens",
        "otpcore.service",
        "otpcore.ports",
        "otpcore.stores",
        "otpcore.testing",
        "otpcore.cli",
        "otpcore.observability",
        "otpcore_fastapi",
    ),
    "otpcore.tokens": (
        "otpcore.service",
        "otpcore.ports",
        "otpcore.stores",
        "otpcore_fastapi",
    ),
    "otpcore.ports": ("otpcore.service", "otpcore.stores", "otpcore.tokens", "otpcore_fastapi"),
    "otpcore.service": ("otpcore.stores", "otpcore.testing", "otpcore_fastapi"),
    "otpcore.stores": ("otpcore.service", "otpcore_fastapi"),
    "otpcore.delivery": (
        "otpcore.service",
        "otpcore.stores",
        "otpcore.testing",
        "otpcore.cli",
        "otpcore_fastapi",
    ),
    "otpcore": ("otpcore_fastapi",),
}

#: What the pure core may not touch: drivers, frameworks, clocks, randomness, I/O.
IMPURE = (
    "sqlalchemy",
    "pymongo",
    "motor",
    "fastapi",
    "starlette",
    "asyncio",
    "random",
    "secrets",
    "time",
    "socket",
    "os",
    "logging",
)


def _modules(package: str) -> list[tuple[str, Path]]:
    base = ROOT / package.replace(".", "/")
    found = []
    for path in sorted(base.rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        name = ".".join(relative.parts).removesuffix(".__init__")
        found.append((name, path))
    return found


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _layer_of(module: str) -> str:
    # The most specific layer prefix that names this module.
    return max((p for p in FORBIDDEN_LAYERS if _within(module, p)), key=len)


ALL_MODULES = _modules("otpcore")


@pytest.mark.parametrize(("module", "path"), ALL_MODULES, ids=[m for m, _ in ALL_MODULES])
def test_imports_point_downward(module: str, path: Path) -> None:
    forbidden = FORBIDDEN_LAYERS[_layer_of(module)]
    upward = sorted(
        name for name in _imports(path) if any(_within(name, layer) for layer in forbidden)
    )
    assert upward == [], f"{module} imports a layer above it: {upward}"


@pytest.mark.parametrize(
    ("module", "path"), _modules("otpcore.domain"), ids=[m for m, _ in _modules("otpcore.domain")]
)
def test_the_domain_is_pure(module: str, path: Path) -> None:
    impure = sorted(name for name in _imports(path) if any(_within(name, lib) for lib in IMPURE))
    assert impure == [], f"{module} imports I/O, a clock or randomness: {impure}"
    source = path.read_text(encoding="utf-8")
    for call in ("datetime.now(", ".utcnow(", "datetime.today("):
        assert call not in source, f"{module} reads the clock ({call})"


def test_the_checks_can_fail() -> None:
    # The binding is above every otpcore layer; a domain module importing it must be caught.
    assert _within("otpcore_fastapi.config", FORBIDDEN_LAYERS["otpcore.domain"][-1])
    assert _layer_of("otpcore.domain.records") == "otpcore.domain"
    assert _layer_of("otpcore.stores.sqlalchemy.adapter") == "otpcore.stores"
    assert "fastapi" in {
        name.split(".")[0] for name in _imports(ROOT / "otpcore_fastapi/router.py")
    }
