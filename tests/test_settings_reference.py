"""docs/settings.md is what the settings Structs generate, and it names every setting."""

from __future__ import annotations

import re

import pytest

from tiergate_runtime import settings_doc

from .test_config_documented import SERVICES, field_names


def test_the_reference_is_current() -> None:
    problems = settings_doc.diff()
    assert not problems, f"{'; '.join(problems)}: run `{settings_doc.COMMAND}`"


@pytest.mark.parametrize("service", [s.name for s in settings_doc.SERVICES])
def test_every_setting_has_a_row(service: str) -> None:
    """The walk reaches every field of every nested Struct (the config test's own walk)."""
    text = settings_doc.render()
    section = text.split(f"\n## {service}\n", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE))
    missing = sorted(field_names(SERVICES[service]) - rows)
    assert not missing, f"docs/settings.md, {service}: no row for {', '.join(missing)}"
