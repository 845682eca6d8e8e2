"""How models are named in a chat: the identifier, or `token_id` where two usable models share one."""

from __future__ import annotations

from storage import Model


def handles_for(models: list[Model]) -> dict[int, str]:
    """model id → the word that calls it in this chat; clashing identifiers get the model id appended."""
    counts: dict[str, int] = {}
    for model in models:
        if model.token:
            counts[model.token.lower()] = counts.get(model.token.lower(), 0) + 1
    handles = {}
    for model in models:
        if model.token:
            token = model.token.lower()
            handles[model.id] = token if counts[token] == 1 else f"{token}_{model.id}"
    return handles


def find_by_word(models: list[Model], word: str) -> list[Model]:
    """Models a user named in /share or /unshare: by identifier, handle, name or class word."""
    word = word.strip().lower()
    handles = handles_for(models)
    exact = [m for m in models if handles.get(m.id) == word]
    if exact:
        return exact
    return [
        m for m in models
        if word in {(m.token or "").lower(), m.name.lower(), m.class_word.lower(), f"{m.token} {m.class_word}".lower()}
    ]
