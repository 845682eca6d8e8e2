"""Which class words /train takes: a vetted list of common subjects, and a few words of one's own.

A class word costs GPU time the first time anyone uses it: prior preservation draws NUM_CLASS_IMAGES pictures of
"a photo of <class>" (cached per base model and shared by all users afterwards). Words from the vetted list below are
cheap for everyone after their first use, so they are always accepted; any other word a user tries is one of their
NEW_CLASS_WORDS (lifetime, deleted models included), so no one can burn the GPU by inventing a class per training.
"""

from __future__ import annotations

import re

# Lifetime allowance of class words outside the vetted list, per user.
NEW_CLASS_WORDS = 2

# One or two plain lowercase English words, as the class prompt uses them verbatim.
_SHAPE = re.compile(r"^[a-z]{2,20}( [a-z]{2,20})?$")

VETTED = frozenset({
    # people
    "person", "man", "woman", "boy", "girl", "child", "kid", "baby", "toddler", "teenager", "guy", "lady",
    "old man", "old woman", "face",
    # pets and animals
    "dog", "puppy", "cat", "kitten", "rabbit", "bunny", "hamster", "guinea pig", "parrot", "bird", "horse",
    "pony", "cow", "pig", "goat", "sheep", "duck", "chicken", "turtle", "tortoise", "lizard", "snake", "fish",
    "ferret", "rat", "mouse", "hedgehog", "fox", "bear", "monkey", "animal",
    # toys and things people love
    "toy", "teddy bear", "plush", "doll", "action figure", "figurine", "robot", "stuffed animal", "lego",
    "car", "bike", "bicycle", "motorcycle", "scooter", "truck", "boat", "plane",
    "house", "building", "room", "garden", "tree", "flower", "plant",
    "cup", "mug", "bottle", "vase", "bowl", "teapot", "clock", "watch", "ring", "necklace", "jewelry",
    "bag", "backpack", "handbag", "hat", "cap", "shoe", "sneaker", "boot", "shirt", "dress", "jacket",
    "glasses", "sunglasses", "guitar", "camera", "phone", "laptop", "chair", "sofa", "lamp", "book",
    "painting", "sculpture", "statue", "logo", "cake", "food", "candle", "pillow", "blanket",
})

# Plurals people type for a word of the list ("dogs" → "dog"); the class prompt is singular.
_IRREGULAR = {"men": "man", "women": "woman", "children": "child", "kids": "kid", "mice": "mouse",
              "puppies": "puppy", "bunnies": "bunny", "babies": "baby", "ladies": "lady", "geese": "goose"}


def normalise(raw: str) -> str | None:
    """The class word as the class prompt will use it, or None when it is not one or two plain words."""
    word = " ".join(raw.lower().split())
    if not _SHAPE.match(word):
        return None
    if word in VETTED:
        return word
    head, _, last = word.rpartition(" ")
    singular = _IRREGULAR.get(last) or (last[:-1] if last.endswith("s") else last)
    candidate = f"{head} {singular}".strip()
    return candidate if candidate in VETTED else word


def is_vetted(word: str) -> bool:
    return word in VETTED


__all__ = ["NEW_CLASS_WORDS", "VETTED", "is_vetted", "normalise"]
