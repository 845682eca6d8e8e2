"""The layering of the product, read from the source: who may import what, and no import cycles anywhere.

A pure-Python reading of the import statements (ast) rather than import-linter: it needs no dependency, it sees
function-local imports as imports (they hide cycles as well as module-level ones do), and on failure it prints
each cycle as a path a reader can follow, module by module."""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("bot", "engine", "storage", "tools")
ML_STACK = {"torch", "diffusers", "transformers", "accelerate", "peft", "xformers"}
SQL = {"sqlite3", "aiosqlite", "psycopg", "psycopg_pool"}
# The one piece of the engine the bot may use: the torch-free photo rules (and the package that holds them).
ENGINE_FOR_THE_BOT = {"engine", "engine.photos"}


@dataclass(frozen=True)
class Import:
    source: str  # the importing product module, e.g. "bot.app"
    target: str  # the module imported, e.g. "storage.records" or "torch.nn"
    line: int
    local: bool  # inside a function: runs later, but ties the two modules together all the same
    typing_only: bool  # under `if TYPE_CHECKING:`: never runs

    def __str__(self) -> str:
        where = " (in a function)" if self.local else ""
        return f"{self.source}:{self.line} imports {self.target}{where}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for part in PARTS:
        for path in sorted((ROOT / part).rglob("*.py")):
            modules[module_name(path)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, local: bool, typing_only: bool) -> Iterator[tuple[ast.AST, bool, bool]]:
    for child in ast.iter_child_nodes(node):
        yield child, local, typing_only
        in_function = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield stmt, in_function, True
                yield from _walk(stmt, in_function, True)
            for stmt in child.orelse:
                yield stmt, in_function, typing_only
                yield from _walk(stmt, in_function, typing_only)
            continue
        yield from _walk(child, in_function, typing_only)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []
    for node, local, typing_only in _walk(tree, False, False):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from storage import records` imports the module storage.records; `from storage import Job`, storage.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in dict.fromkeys(targets):
            found.append(Import(name, target, node.lineno, local, typing_only))
    return found


@functools.cache
def _all_imports() -> tuple[Import, ...]:
    modules = product_modules()
    return tuple(imp for name, path in modules.items() for imp in imports_of(name, path, modules))


def all_imports() -> list[Import]:
    return list(_all_imports())


def _top(target: str) -> str:
    return target.partition(".")[0]


def _part(module: str) -> str:
    return module.partition(".")[0]


def _graph(imports: list[Import], modules: set[str]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        if imp.source in graph and imp.target in graph and imp.target != imp.source and not imp.typing_only:
            graph[imp.source].add(imp.target)
    return graph


def import_cycles(imports: list[Import], modules: set[str]) -> list[list[str]]:
    """Every group of modules that import each other, round and round (Tarjan's strongly connected components)."""
    graph = _graph(imports, modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # recursion depth is bounded by the module count (a few hundred)
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def one_cycle(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest way from the group's first module back to itself, for the message."""
    members = set(group)
    start = group[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    return group


def _explain(groups: list[list[str]], imports: list[Import]) -> str:
    graph = _graph(imports, {m for group in groups for m in group})
    lines = []
    for group in groups:
        cycle = one_cycle(group, graph)
        lines.append(f"cycle among {', '.join(group)}: " + " → ".join(cycle))
        for a, b in zip(cycle, cycle[1:], strict=False):
            lines.extend(f"    {imp}" for imp in imports if imp.source == a and imp.target == b)
    return "\n".join(lines)


def _refused(imports: list[Import], may: Callable[[Import], bool]) -> list[str]:
    return [str(imp) for imp in imports if not imp.typing_only and not may(imp)]


def test_the_product_has_no_import_cycles() -> None:
    imports = all_imports()
    cycles = import_cycles(imports, set(product_modules()))
    assert not cycles, "import cycles in the product:\n" + _explain(cycles, imports)


def test_the_bot_imports_no_ml_stack_and_of_the_engine_only_the_photo_rules() -> None:
    bot = [imp for imp in all_imports() if _part(imp.source) == "bot"]
    refused = _refused(bot, lambda imp: _top(imp.target) not in ML_STACK
                       and (_top(imp.target) != "engine" or imp.target in ENGINE_FOR_THE_BOT))
    assert not refused, "the bot reaches past its layer:\n" + "\n".join(refused)


def test_what_the_bot_may_import_of_the_engine_pulls_in_no_ml_stack() -> None:
    # The bot starts in a second on a CPU box: the engine modules it uses must not drag torch in behind its back.
    imports = all_imports()
    allowed = {imp.source for imp in imports if imp.source in ENGINE_FOR_THE_BOT}
    refused = _refused([imp for imp in imports if imp.source in allowed and not imp.local],
                       lambda imp: _top(imp.target) not in ML_STACK
                       and (_top(imp.target) != "engine" or imp.target in ENGINE_FOR_THE_BOT))
    assert not refused, "the engine modules the bot uses reach further:\n" + "\n".join(refused)


def test_the_engine_never_imports_aiogram() -> None:
    engine = [imp for imp in all_imports() if _part(imp.source) == "engine"]
    refused = _refused(engine, lambda imp: _top(imp.target) != "aiogram")
    assert not refused, "the engine imports Telegram code:\n" + "\n".join(refused)


def test_only_storage_speaks_sql() -> None:
    refused = _refused(all_imports(), lambda imp: _part(imp.source) == "storage" or _top(imp.target) not in SQL)
    assert not refused, "SQL outside storage/:\n" + "\n".join(refused)


def test_the_import_reader_sees_a_cycle_hidden_in_a_function() -> None:
    # The reader itself, on a made-up pair: a cycle closed by an import inside a function still counts.
    modules = {"bot.a", "bot.b"}
    there = Import("bot.a", "bot.b", 1, local=False, typing_only=False)
    back = Import("bot.b", "bot.a", 9, local=True, typing_only=False)
    assert import_cycles([there, back], modules) == [["bot.a", "bot.b"]]
    assert one_cycle(["bot.a", "bot.b"], _graph([there, back], modules)) == ["bot.a", "bot.b", "bot.a"]
    typing_only = Import("bot.b", "bot.a", 9, local=False, typing_only=True)  # never runs
    assert import_cycles([there, typing_only], modules) == []
