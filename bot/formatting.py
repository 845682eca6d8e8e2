"""Everything the bot sends under parse_mode=HTML is built here: user-supplied values escaped, trusted markup marked.

The rule is one line: a value is text unless it is `Markup`. `Texts` (bot/texts.py) escapes every value it puts
into a template through `escape`, and a template it renders is `Markup` itself, so texts nest without being escaped
twice. Code that builds a fragment with tags (a list of `<code>` commands, a line per model) builds it with `code`,
`join` and `markup` from here; nothing else in the bot writes `<` or calls html.escape. Values never go inside a tag's
attribute (an href), only between tags, so escaping `<`, `>` and `&` is all Telegram needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from aiogram.utils.text_decorations import html_decoration


class Markup(str):
    """A fragment of Telegram HTML that is trusted as it is: a rendered template, or text already escaped."""

    __slots__ = ()


def escape(value: object) -> Markup:
    """`value` as text Telegram shows verbatim (idempotent: Markup passes through unchanged)."""
    if isinstance(value, Markup):
        return value
    return Markup(html_decoration.quote(str(value)))


def markup(template: str, **values: object) -> Markup:
    """A trusted template (from this codebase, never from a user) filled with escaped values."""
    return Markup(template.format(**{name: escape(value) for name, value in values.items()}))


def code(value: object) -> Markup:
    """Monospace text: a command, an identifier, a word to type."""
    return Markup(f"<code>{escape(value)}</code>")


def bold(value: object) -> Markup:
    return Markup(f"<b>{escape(value)}</b>")


def join(parts: Iterable[object], separator: str = "\n") -> Markup:
    """Joins fragments; plain strings among them are escaped, Markup ones kept."""
    return Markup(escape(separator).join(escape(p) for p in parts))


def clip(text: str, limit: int) -> str:
    """Plain text cut to at most `limit` characters (with an ellipsis); escape it afterwards."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def fit_lines(lines: list[Markup], limit: int, more: Callable[[int], Markup] | None = None) -> tuple[Markup, int]:
    """As many whole lines as fit in `limit` characters of markup, then `more(left_out)` when some are left out;
    returns the text and how many lines were left out. Lines are never cut, so no tag is ever broken."""
    if sum(len(line) + 1 for line in lines) <= limit:
        return join(lines), 0
    room = limit - (len(more(len(lines))) + 1 if more else 0)
    kept: list[Markup] = []
    used = 0
    for line in lines:
        if used + len(line) + 1 > room:
            break
        used += len(line) + 1
        kept.append(line)
    left_out = len(lines) - len(kept)
    return join([*kept, more(left_out)] if more else kept), left_out


__all__ = ["Markup", "bold", "clip", "code", "escape", "fit_lines", "join", "markup"]


# What a refusal may repeat of what a user typed: a short word of letters, digits, "_" and "-". Telegram turns a
# URL, a bare domain, an @mention, a /command, a #hashtag or a $cashtag in the bot's own message into a link, and
# the bot must not lend its voice to a link someone else chose; anything else is left unnamed.
_ECHO_SAFE = re.compile(r"-{0,2}[^\W_][\w-]{0,29}")


def echo_safe(value: str) -> bool:
    """Whether a refusal may show `value` as the user typed it (it cannot become a link or a command)."""
    return _ECHO_SAFE.fullmatch(value) is not None

