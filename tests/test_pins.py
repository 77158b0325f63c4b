"""Every installed package is pinned (issue 12 point 8): requirements.txt pins what the project asks
for, constraints.txt pins every package installed (dependencies of dependencies too), and
``make install`` installs with both, so a fresh clone runs the versions the tests ran with."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]+\])?==([^\s;#]+)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = PIN.match(line)
        assert m, f"{path.name}: {raw!r} is not pinned with =="
        pins[_canonical(m.group(1))] = m.group(3)
    return pins


def test_every_requirement_is_pinned_and_agrees_with_the_constraints() -> None:
    requirements = _pins(ROOT / "requirements.txt")
    constraints = _pins(ROOT / "constraints.txt")
    assert "numpy" in requirements
    for name, version in requirements.items():
        assert constraints.get(name) == version, f"{name}: requirements.txt {version}, constraints.txt {constraints.get(name)}"


def test_every_installed_package_is_pinned_at_its_installed_version() -> None:
    constraints = _pins(ROOT / "constraints.txt")
    unpinned = []
    for dist in metadata.distributions():
        name = _canonical(dist.metadata["Name"])
        if name in ("pip", "setuptools", "wheel"):
            continue
        if constraints.get(name) != dist.version:
            unpinned.append(f"{name}=={dist.version} (constraints.txt: {constraints.get(name)})")
    assert not unpinned, "installed but not pinned in constraints.txt: " + ", ".join(sorted(unpinned))


def test_make_installs_with_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "-r requirements.txt -c constraints.txt" in makefile
