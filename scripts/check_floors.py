"""Check that an environment installed with ``--resolution lowest-direct`` holds the floors.

Usage: ``python scripts/check_floors.py EXTRA[,EXTRA...]`` with the environment's own Python.

Every direct requirement of the project and of the named extras (following ``otpcore[...]``
references) must declare a lower bound (``>=`` or ``==``), and the installed version must be
exactly that bound. If the resolver had to install something newer, another requirement
forces it and the declared floor was never tested: raise it to what was installed. Exits 1
with one line per problem, 0 when every floor is the version under test.
"""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def requirements(extras: list[str]) -> list[Requirement]:
    """The direct requirements of the project itself plus ``extras``, self-references expanded."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    name = canonicalize_name(project["name"])
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    found: dict[str, Requirement] = {}
    pending = [Requirement(text) for text in project["dependencies"]]
    seen: set[str] = set()
    queue = list(extras)
    while queue:
        extra = queue.pop()
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"check_floors: no extra {extra!r} in {PYPROJECT}")
        seen.add(extra)
        for text in optional[extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == name:
                queue.extend(requirement.extras)
            else:
                pending.append(requirement)
    for requirement in pending:
        if requirement.marker is None or requirement.marker.evaluate():
            key = f"{canonicalize_name(requirement.name)} {requirement.specifier}"
            found.setdefault(key, requirement)
    return list(found.values())


def floor(requirement: Requirement) -> Version | None:
    """The lowest version ``requirement`` admits: its ``>=`` or ``==`` bound."""
    bounds = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==")]
    return max(bounds) if bounds else None


def problems(extras: list[str]) -> list[str]:
    """One line per requirement whose floor is missing or not the installed version."""
    lines = []
    for requirement in requirements(extras):
        lowest = floor(requirement)
        if lowest is None:
            lines.append(f"{requirement}: no floor declared (add >=)")
            continue
        try:
            installed = Version(version(requirement.name))
        except PackageNotFoundError:
            lines.append(f"{requirement}: not installed")
            continue
        # A post-release is the same code repackaged (email-validator 2.1 exists only as
        # 2.1.0.post1), so it counts as the floor itself.
        if Version(installed.base_version) != lowest:
            lines.append(
                f"{requirement}: lowest-direct installed {installed}, so {lowest} was never "
                "tested; raise the floor to what another requirement forces"
            )
    return lines


def main(argv: list[str]) -> int:
    """Print the problems for the extras in ``argv[1]`` (comma-separated); 1 if any."""
    extras = [extra for extra in (argv[1] if len(argv) > 1 else "").split(",") if extra]
    found = problems(extras)
    for line in found:
        print(f"check_floors: {line}", file=sys.stderr)
    if not found:
        print(f"check_floors: every floor of [{','.join(extras)}] is the installed version")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
