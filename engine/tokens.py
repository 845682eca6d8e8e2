"""The pool of rare identifier tokens a personalised model is bound to (torch-free)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class TokenizerLike(Protocol):
    def tokenize(self, text: str) -> list[str]: ...


# The DreamBooth paper asks for an identifier with a weak prior: a short, rare token of the text encoder's
# vocabulary, so the model does not have to unlearn a meaning first. Every word here is a single token of CLIP's
# real BPE vocabulary (SD1.x, SD2.x and SDXL read prompts with it) and a rare one: its id is above 47,000 of
# 49,408, i.e. its merge was among the last CLIP learnt, which is what "rare in CLIP's training captions" means
# (common English words are merged early: "dog" is 1929, "photo" 1125). "sks" and "ohwx" are the community's usual
# choices (both are in github.com/2kpr/dreambooth-tokens, the list of CLIP's single tokens); the rest are
# meaningless letter runs and word-endings of the same region, with words, names, brands and slurs left out.
# tests/engine/test_clip_vocabulary.py checks all of it against the shipped vocabulary. Order matters: the first
# free one is given out, and each is checked against the loaded tokenizer, so one that is not a single token
# there is simply skipped.
IDENTIFIER_POOL: tuple[str, ...] = (
    "sks", "ohwx", "phol", "ront", "fler", "peth", "rith", "tich", "ylor", "yler", "ynna", "shma",
    "nery", "wbo", "ucn", "sgh", "nrf", "hns", "bdg", "mwf", "pln", "omd", "rcn", "dru",
)

# Words the tiny test models' vocabularies hold as single tokens besides the pool (prompt words tests use).
COMMON_PROMPT_WORDS: tuple[str, ...] = (
    "a", "an", "the", "photo", "picture", "portrait", "painting", "of", "in", "on", "at", "with", "and", "by",
    "dog", "cat", "person", "man", "woman", "boy", "girl", "child", "face", "toy", "car", "house", "bird",
    "paris", "london", "beach", "forest", "city", "space", "snow", "style", "oil", "watercolor", "sketch",
    "red", "blue", "green", "hat", "wearing", "sitting", "standing", "smiling", "blurry", "low", "quality",
    "ugly", "bad", "high", "detailed", "best", "art", "anime", "cartoon", "realistic", "sunset", "night",
)


class NoFreeToken(Exception):
    """Every identifier of the pool is taken by this owner's live models."""


def is_single_token(tokenizer: Any, word: str) -> bool:
    return len(tokenizer.tokenize(word)) == 1


def usable_pool(tokenizer: Any, pool: Iterable[str] = IDENTIFIER_POOL) -> list[str]:
    """The pool tokens that really are one token of this tokenizer, in pool order."""
    return [word for word in pool if is_single_token(tokenizer, word)]


def pieces_in_prompt(tokenizer: Any, word: str) -> int:
    """How many tokens `word` costs where it stands in a prompt (after a space: T5's ▁ and Qwen's Ġ forms)."""
    return len(tokenizer.tokenize(f"a {word}")) - len(tokenizer.tokenize("a"))


def pool_for(tokenizers: Iterable[Any], pool: Iterable[str] = IDENTIFIER_POOL) -> list[str]:
    """The identifiers for a model that reads prompts with `tokenizers`, best first.

    Every pool word is rare and short for CLIP (see IDENTIFIER_POOL); FLUX.1's T5 and the Qwen tokenizers of
    FLUX.2 and Z-Image split some of them, and a word split into pieces is a weaker, more entangled identifier.
    So the words that are one token in every tokenizer the model reads come first, in pool order; then the rest,
    fewest pieces first — a model whose vocabulary splits them all still gets its least-split identifiers.
    """
    tokenizers = list(tokenizers)
    words = list(pool)
    cost = {w: max(pieces_in_prompt(t, w) for t in tokenizers) if tokenizers else 1 for w in words}
    return sorted(words, key=lambda w: (cost[w], words.index(w)))


def pick_token(pool: Iterable[str], in_use: Iterable[str]) -> str:
    """The first pool token the owner does not use yet: a user's models never share an identifier."""
    taken = {t.lower() for t in in_use}
    for word in pool:
        if word.lower() not in taken:
            return word
    raise NoFreeToken("all identifier tokens are in use; delete a model first")


def instance_prompt(token: str, class_word: str) -> str:
    return f"a photo of {token} {class_word}"


def class_prompt(class_word: str) -> str:
    return f"a photo of {class_word}"
