"""Self-description is executable: every module of a service is in its design.md table."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = sorted(p for p in (ROOT / "services").iterdir() if (p / "design.md").exists())


@pytest.mark.parametrize("service", SERVICES, ids=lambda p: p.name)
def test_every_module_is_in_the_design_note(service: Path) -> None:
    design = (service / "design.md").read_text()
    (package,) = [p for p in (service / "src").iterdir() if p.is_dir() and p.name != "__pycache__"]
    missing = []
    for module in sorted(package.rglob("*.py")):
        if module.name in {"__init__.py", "__main__.py"}:
            continue
        relative = module.relative_to(package).as_posix()
        if f"`{relative}`" not in design and f"`{module.name}`" not in design:
            missing.append(relative)
    assert not missing, f"{service.name}/design.md names no row for: {', '.join(missing)}"
