"""A fresh machine gets what the lock says: constraints.txt pins everything pyproject.toml asks for."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, Version]:
    """The lock's pins that apply to this interpreter (a universal lock forks some by Python version)."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)\s*(?:;\s*(.+))?$", line)
        if m and (m.group(3) is None or Marker(m.group(3)).evaluate()):
            pins[_canonical(m.group(1))] = Version(m.group(2))
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        names += extra
    return [Requirement(r) for r in names]


def test_every_dependency_is_pinned_within_its_range() -> None:
    pins = _pins()
    for requirement in _requirements():
        name = _canonical(requirement.name)
        assert name in pins, f"{name} is in pyproject.toml but not in constraints.txt: refresh the lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {requirement.specifier}"
        )


def test_this_environment_was_installed_from_the_lock() -> None:
    pins = _pins()
    wrong = []
    for requirement in _requirements():
        name = _canonical(requirement.name)
        try:
            installed = Version(metadata.version(requirement.name))
        except metadata.PackageNotFoundError:
            continue  # an extra this environment does not use (xformers on a CPU box)
        if Version(installed.public) != pins[name]:
            wrong.append(f"{name} {installed} (lock: {pins[name]})")
    assert not wrong, "installed without the lock: " + ", ".join(wrong)
