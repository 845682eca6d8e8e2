"""The synthetic world: each class word is one flat shape, drawn in a random colour, size and place on a plain ground."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

RESOLUTION = 32
BACKGROUND = (236, 236, 236)

# A shape a person would tell apart at 32 px, and whose fill ratio (area over bounding box) differs clearly:
# disk ≈ 0.79, triangle ≈ 0.5, square = 1.0. The metrics lean on that ratio to recognise the class.
CLASS_SHAPES: dict[str, str] = {"dog": "disk", "cat": "triangle", "toy": "square"}
CLASSES: tuple[str, ...] = tuple(CLASS_SHAPES)

# Colour words the base model learns ("a photo of red dog"), so, like a real model, it has a way from a word in
# the adjective's place to the object's colour; DreamBooth puts the identifier in exactly that place. Orange
# (the subject's hue) is deliberately not among them: the identifier has to come to mean it.
COLOUR_WORDS: dict[str, float] = {
    "red": 0.0, "yellow": 1 / 6, "green": 2 / 6, "cyan": 3 / 6, "blue": 4 / 6, "purple": 5 / 6,
}
COLOUR_WORD_SPREAD = 1 / 24

# The subject the tests and eval-toy teach the model: an orange dog. Orange is one hue among all that the base
# model draws for "dog", so seeing it in most samples of "a photo of <token> dog" is learnt, not luck.
SUBJECT_CLASS = "dog"
SUBJECT_HUE = 0.07
SUBJECT_SATURATION = 0.9
SUBJECT_VALUE = 0.9


@dataclass(frozen=True)
class Thing:
    """One object of the world: which shape, where, how large and in what colour."""

    class_word: str
    centre: tuple[float, float]
    radius: float
    colour: tuple[int, int, int]


def hsv_colour(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return (round(r * 255), round(g * 255), round(b * 255))


def random_colour(rng: np.random.Generator, hue: float | None = None) -> tuple[int, int, int]:
    # Saturated and not too light, so every object stands out from the pale ground.
    h = float(rng.uniform(0, 1)) if hue is None else hue
    return hsv_colour(h, float(rng.uniform(0.65, 1.0)), float(rng.uniform(0.55, 0.95)))


def colour_word_hue(rng: np.random.Generator, word: str) -> float:
    return COLOUR_WORDS[word] + float(rng.uniform(-COLOUR_WORD_SPREAD, COLOUR_WORD_SPREAD))


def random_thing(rng: np.random.Generator, class_word: str, colour: tuple[int, int, int] | None = None,
                 resolution: int = RESOLUTION) -> Thing:
    radius = float(rng.uniform(0.22, 0.32)) * resolution
    margin = radius + 1
    cx = float(rng.uniform(margin, resolution - margin))
    cy = float(rng.uniform(margin, resolution - margin))
    return Thing(class_word, (cx, cy), radius, colour or random_colour(rng))


def draw(thing: Thing, resolution: int = RESOLUTION) -> Image.Image:
    image = Image.new("RGB", (resolution, resolution), BACKGROUND)
    pen = ImageDraw.Draw(image)
    (cx, cy), r = thing.centre, thing.radius
    shape = CLASS_SHAPES[thing.class_word]
    if shape == "disk":
        pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=thing.colour)
    elif shape == "square":
        side = r * 0.9  # a square of the same area as the disk would look bigger; keep the sizes comparable
        pen.rectangle([cx - side, cy - side, cx + side, cy + side], fill=thing.colour)
    else:
        pen.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=thing.colour)
    return image


def class_pictures(class_word: str, count: int, seed: int, resolution: int = RESOLUTION) -> list[Image.Image]:
    """`count` pictures of a class in random colours and places; the same seed always gives the same pictures."""
    rng = np.random.default_rng(seed)
    return [draw(random_thing(rng, class_word, resolution=resolution), resolution) for _ in range(count)]


def subject_colour(jitter: float = 0.0, rng: np.random.Generator | None = None) -> tuple[int, int, int]:
    if rng is None or jitter == 0.0:
        return hsv_colour(SUBJECT_HUE, SUBJECT_SATURATION, SUBJECT_VALUE)
    return hsv_colour(
        SUBJECT_HUE + float(rng.uniform(-jitter, jitter)),
        SUBJECT_SATURATION,
        SUBJECT_VALUE + float(rng.uniform(-jitter, jitter)),
    )


def subject_photos(count: int = 4, seed: int = 7, resolution: int = RESOLUTION) -> list[Image.Image]:
    """The user's "photos" of their own dog: the same orange disk, seen in different places and sizes."""
    rng = np.random.default_rng(seed)
    return [
        draw(random_thing(rng, SUBJECT_CLASS, colour=subject_colour(0.01, rng), resolution=resolution), resolution)
        for _ in range(count)
    ]
