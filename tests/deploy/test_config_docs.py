from __future__ import annotations

import re
from pathlib import Path

from storage.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {name.upper() for name in Settings.model_fields}


def test_env_example_lists_every_setting_with_a_comment() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    names = []
    for i, line in enumerate(lines):
        if m := re.match(r"^([A-Z_]+)=", line):
            names.append(m.group(1))
            assert lines[i - 1].startswith("#"), f"{m.group(1)} in .env.example has no comment above it"
    assert sorted(names) == sorted(SETTINGS)


def test_readme_configuration_table_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    table = re.findall(r"^\| `([A-Z_]+)` \|", readme, flags=re.MULTILINE)
    assert sorted(table) == sorted(SETTINGS)


def test_readme_defaults_agree_with_the_settings_object() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, field in Settings.model_fields.items():
        row = re.search(rf"^\| `{name.upper()}` \|[^|]*\| ([^|]+) \|$", readme, flags=re.MULTILINE)
        assert row, name
        default = field.default
        if isinstance(default, int) and not isinstance(default, bool):
            assert row.group(1).strip() == str(default), name


def test_ci_runs_the_readme_test_command() -> None:
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.strip() and not ln.startswith(("#", "set ", "cd "))]
    assert ci[-1] in (ROOT / "README.md").read_text()
