"""Moves texts waiting in bot/locales/<lang>.json into the Fluent files bot/locales/<lang>.ftl.

    python -m tools.locales          # convert every waiting key, then empty the JSON inboxes
    python -m tools.locales --check  # exit 1 if a key waits (the texts work either way; this keeps them tidy)

A key already in the .ftl file is replaced by the JSON one (the newer wish). Counts still read "photo(s)" after
the move: write their plural forms by hand (`{ $n -> [one] … *[other] … }`; Russian has one/few/many).
"""

from __future__ import annotations

import argparse
import json
import sys

from fluent.syntax import FluentParser, FluentSerializer, ast

from bot.texts import LANGUAGES, LOCALES_DIR, json_text_to_ftl


def convert(language: str) -> list[str]:
    """Moves one language's waiting keys; returns them."""
    inbox_path = LOCALES_DIR / f"{language}.json"
    inbox = json.loads(inbox_path.read_text(encoding="utf-8")) if inbox_path.exists() else {}
    if not inbox:
        return []
    ftl_path = LOCALES_DIR / f"{language}.ftl"
    text = ftl_path.read_text(encoding="utf-8") if ftl_path.exists() else ""
    resource = FluentParser().parse(text)
    incoming = FluentParser().parse("".join(json_text_to_ftl(k, v) for k, v in inbox.items()))
    replaced = {entry.id.name: entry for entry in incoming.body if isinstance(entry, ast.Message)}
    body = []
    for entry in resource.body:
        if isinstance(entry, ast.Message) and entry.id.name in replaced:
            body.append(replaced.pop(entry.id.name))
        else:
            body.append(entry)
    body.extend(replaced.values())
    ftl_path.write_text(FluentSerializer(with_junk=True).serialize(ast.Resource(body)), encoding="utf-8")
    inbox_path.write_text("{}\n", encoding="utf-8")
    return list(inbox)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether keys wait in a JSON inbox")
    args = parser.parse_args(argv)
    waiting = False
    for language in LANGUAGES:
        path = LOCALES_DIR / f"{language}.json"
        keys = list(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else []
        if args.check:
            if keys:
                print(f"{language}: {len(keys)} key(s) wait in {path.name}: {', '.join(keys)}")
                waiting = True
            continue
        moved = convert(language)
        print(f"{language}: moved {len(moved)} key(s) into {language}.ftl")
    return 1 if waiting else 0


if __name__ == "__main__":
    sys.exit(main())
