"""The mutation table in tools/mutations.py still points at code that exists and at tests that exist."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _table():
    spec = importlib.util.spec_from_file_location("kabina_mutations", ROOT / "tools" / "mutations.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the table is built
    spec.loader.exec_module(module)
    return module.MUTATIONS


def _missing_test(node_id: str) -> str | None:
    """Why the test a node id names does not exist, or None when it does."""
    file, _, rest = node_id.partition("::")
    name = re.split(r"[\[:]", rest, maxsplit=1)[0]
    path = ROOT / file
    if not path.is_file():
        return f"no file {file}"
    if not re.search(rf"^\s*(async\s+)?def {re.escape(name)}\(", path.read_text(), re.MULTILINE):
        return f"no test {name} in {file}"
    return None


def test_every_mutation_finds_the_code_it_breaks_exactly_once() -> None:
    problems = []
    for mutation in _table():
        path = ROOT / mutation.file
        if not path.is_file():
            problems.append(f"{mutation.name}: no file {mutation.file}")
        elif (count := path.read_text().count(mutation.old)) != 1:
            problems.append(f"{mutation.name}: its text occurs {count} times in {mutation.file}")
        for node_id in mutation.tests:
            if (why := _missing_test(node_id)) is not None:
                problems.append(f"{mutation.name}: {why}")
    assert not problems, "\n".join(problems)
