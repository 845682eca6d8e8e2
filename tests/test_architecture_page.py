"""docs/architecture.md stays a true map: every module it names exists in this checkout."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "architecture.md"


def test_every_module_the_code_map_names_exists() -> None:
    text = PAGE.read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:bot|engine|storage|tools)/[\w/]+\.py)`", text))
    assert len(named) > 20, "the page names the modules of its code map as `part/module.py`"
    missing = sorted(path for path in named if not (ROOT / path).is_file())
    assert not missing, f"docs/architecture.md names modules that are gone (moved?): {missing}"


def test_the_readme_links_the_architecture_page() -> None:
    assert "(docs/architecture.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
