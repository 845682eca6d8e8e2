"""DreamBooth's two measures on pictures: subject fidelity (samples look like the photos) and class drift (the class moved)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

# A pixel belongs to the object when one of its channels is this far (0..255) from the ground's colour: well above
# the toy VAE's reconstruction noise (a few levels), well below the contrast of any colour the world draws.
FOREGROUND_THRESHOLD = 40
# Less foreground than this and there is no object to judge; the sample scores zero fidelity.
MIN_COVERAGE = 0.01
# Widths of the fidelity kernels: a colour 0.2 away in RGB (0..1 per channel) already reads as "another colour";
# a fill ratio 0.15 away is another shape (disk 0.79, triangle 0.5, square 1.0 in the toy world).
COLOUR_WIDTH = 0.2
FILL_WIDTH = 0.15
THUMBNAIL = 8
HISTOGRAM_BINS = 4


@dataclass(frozen=True)
class ObjectStats:
    """What a picture of one object on a plain ground shows: how much object, its colour, its shape's fill ratio."""

    coverage: float
    colour: tuple[float, float, float]  # mean RGB of the object, 0..1
    fill_ratio: float  # object pixels over its bounding box: 0.79 disk, 0.5 triangle, 1.0 square


def _rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def object_stats(image: Image.Image) -> ObjectStats:
    """Find the object against the ground (the border's median colour) and describe it."""
    pixels = _rgb(image)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    ground = np.median(border, axis=0)
    mask = np.abs(pixels - ground).max(axis=2) > FOREGROUND_THRESHOLD
    count = int(mask.sum())
    if count == 0:
        return ObjectStats(0.0, (0.0, 0.0, 0.0), 0.0)
    colour = pixels[mask].mean(axis=0) / 255.0
    rows, cols = np.nonzero(mask)
    box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    return ObjectStats(count / mask.size, (float(colour[0]), float(colour[1]), float(colour[2])), count / float(box))


def _colour_distance(a: Sequence[float], b: Sequence[float]) -> float:
    return math.dist(a, b)


def likeness(sample: ObjectStats, reference: ObjectStats) -> float:
    """1 for an object of the reference's colour and shape, falling towards 0 as either departs."""
    if sample.coverage < MIN_COVERAGE:
        return 0.0
    colour = _colour_distance(sample.colour, reference.colour) / COLOUR_WIDTH
    fill = (sample.fill_ratio - reference.fill_ratio) / FILL_WIDTH
    return math.exp(-(colour**2) - fill**2)


def reference_stats(photos: Sequence[Image.Image]) -> ObjectStats:
    """The subject as the instance photos show it: their average colour, fill ratio and coverage."""
    stats = [object_stats(p) for p in photos]
    if not stats:
        raise ValueError("no photos to describe")
    colour = tuple(float(np.mean([s.colour[i] for s in stats])) for i in range(3))
    return ObjectStats(
        float(np.mean([s.coverage for s in stats])),
        (colour[0], colour[1], colour[2]),
        float(np.mean([s.fill_ratio for s in stats])),
    )


def subject_fidelity(samples: Sequence[Image.Image], photos: Sequence[Image.Image]) -> float:
    """How much samples of `a photo of <token> <class>` look like the instance photos: mean likeness, 0..1.

    Colour and shape statistics rather than a learnt embedding: in the toy world they are exactly what tells
    one subject from another, and they need no downloaded network.
    """
    if not samples:
        raise ValueError("no samples to judge")
    reference = reference_stats(photos)
    return float(np.mean([likeness(object_stats(s), reference) for s in samples]))


def colour_histogram(image: Image.Image, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    pixels = (_rgb(image) * bins / 256.0).astype(np.int64).clip(0, bins - 1)
    index = (pixels[..., 0] * bins + pixels[..., 1]) * bins + pixels[..., 2]
    counts = np.bincount(index.ravel(), minlength=bins**3).astype(np.float64)
    return counts / counts.sum()


def thumbnail(image: Image.Image, side: int = THUMBNAIL) -> np.ndarray:
    return _rgb(image.convert("RGB").resize((side, side), Image.Resampling.BOX)) / 255.0


def picture_distance(before: Image.Image, after: Image.Image) -> float:
    """How different two pictures are, 0 (same) .. 1: colours used and coarse layout, equally.

    Both halves are blind to pixel-level noise and work at any resolution, so the same number serves the toy
    model and a real Stable Diffusion model.
    """
    return float(_distances([before], [after])[0, 0])


def _distances(rows: Sequence[Image.Image], columns: Sequence[Image.Image]) -> np.ndarray:
    """picture_distance between every row picture and every column picture, describing each picture once."""
    def describe(images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        return (np.stack([colour_histogram(i) for i in images]),
                np.stack([thumbnail(i).ravel() for i in images]).astype(np.float64))

    (hist_r, thumb_r), (hist_c, thumb_c) = describe(rows), describe(columns)
    histogram = 0.5 * np.abs(hist_r[:, None, :] - hist_c[None, :, :]).sum(axis=2)
    layout = np.abs(thumb_r[:, None, :] - thumb_c[None, :, :]).mean(axis=2)
    return 0.5 * histogram + 0.5 * layout


def _mean_off_diagonal(distances: np.ndarray) -> float:
    return float(distances[~np.eye(distances.shape[0], dtype=bool)].mean())


def class_drift(before: Sequence[Image.Image], after: Sequence[Image.Image]) -> float:
    """How far the class's pictures moved as a population: an energy distance between before and after.

    2·E d(before, after) − E d(before, before') − E d(after, after'), with d = picture_distance and every mean
    over pictures of different seeds. Its expected value is 0 when `after` is a fresh draw of the same population,
    whatever the LoRA did to each single seed, and it grows as the pictures become another population (other
    colours, sizes, places). A mean distance of same-seed pairs, the measure this replaces, could not tell
    those apart: on the toy model two sets of base "dog" pictures at disjoint seeds scored 0.212 on it and base
    "dog" against base "cat" 0.199, so no threshold on it could mean "the class moved".

    `before[i]` and `after[i]` must come from the same seed, prompt and sampler (only the weights differ); the
    same-seed pairs are left out of the cross term, where their shared noise would pull the figure below 0.
    At least two pictures each; it is a population figure, so its noise falls with their number
    (engine.report_card.DRIFT_SEEDS).
    """
    if len(before) != len(after) or len(before) < 2:
        raise ValueError("class drift needs the same number (at least two) of pictures before and after")
    cross = _mean_off_diagonal(_distances(before, after))
    return 2.0 * cross - _mean_off_diagonal(_distances(before, before)) - _mean_off_diagonal(_distances(after, after))
