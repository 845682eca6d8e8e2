"""The metrics recognise the subject and measure movement, on pictures drawn by the toy world itself."""

from __future__ import annotations

import numpy as np

from engine import metrics
from engine.toy import world


def _things(class_word: str, colour, count: int, seed: int):
    rng = np.random.default_rng(seed)
    return [world.draw(world.random_thing(rng, class_word, colour=colour)) for _ in range(count)]


def test_photos_of_the_subject_are_faithful_to_themselves():
    photos = world.subject_photos(4)
    more_of_the_same = world.subject_photos(6, seed=99)
    assert metrics.subject_fidelity(more_of_the_same, photos) > 0.9


def test_dogs_of_other_colours_are_not_the_subject():
    photos = world.subject_photos(4)
    strangers = world.class_pictures("dog", 32, seed=5)
    assert metrics.subject_fidelity(strangers, photos) < 0.3


def test_a_cat_in_the_subjects_colour_is_not_the_subject():
    photos = world.subject_photos(4)
    orange_cats = _things("cat", world.subject_colour(), 8, seed=3)
    assert metrics.subject_fidelity(orange_cats, photos) < 0.3


def test_an_empty_picture_scores_no_fidelity():
    blank = world.draw(world.Thing("dog", (16, 16), 0.0, world.BACKGROUND))
    assert metrics.subject_fidelity([blank], world.subject_photos(4)) == 0.0


def test_shapes_are_told_apart_by_fill_ratio():
    fills = {c: np.mean([metrics.object_stats(p).fill_ratio for p in world.class_pictures(c, 16, seed=1)])
             for c in world.CLASSES}
    assert fills["cat"] < fills["dog"] < fills["toy"]


def test_unchanged_pictures_have_no_drift_and_recoloured_ones_do():
    before = world.class_pictures("dog", 8, seed=2)
    rng = np.random.default_rng(2)
    things = [world.random_thing(rng, "dog") for _ in range(8)]
    recoloured = [world.draw(world.Thing(t.class_word, t.centre, t.radius, world.subject_colour())) for t in things]
    assert metrics.class_drift(before, before) == 0.0
    assert metrics.class_drift(before, recoloured) > 0.02
