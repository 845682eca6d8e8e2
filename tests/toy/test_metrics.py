"""The metrics recognise the subject and measure movement, on pictures drawn by the toy world itself."""

from __future__ import annotations

import numpy as np
import pytest

from engine import metrics
from tools.toy import world


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


def _in_the_subjects_colour(class_word: str, count: int, seed: int):
    """The world's own pictures of a class, but every one recoloured to the user's dog: the subject leaked in."""
    rng = np.random.default_rng(seed)
    things = [world.random_thing(rng, class_word) for _ in range(count)]
    return [world.draw(world.Thing(t.class_word, t.centre, t.radius, world.subject_colour())) for t in things]


def test_unchanged_pictures_have_no_drift_and_recoloured_ones_do():
    before = world.class_pictures("dog", 16, seed=2)
    assert metrics.class_drift(before, before) == 0.0
    assert metrics.class_drift(before, _in_the_subjects_colour("dog", 16, seed=2)) > 0.1


def test_a_fresh_draw_of_the_class_does_not_drift_but_another_class_does():
    # The drift compares populations: other dogs at other seeds are no movement, cats are. Measured on the
    # world's pictures: dogs -0.007 .. 0.002, cats 0.020 .. 0.032 (five seeds).
    before = world.class_pictures("dog", 16, seed=2)
    for seed in (3, 4, 5):
        other_dogs = metrics.class_drift(before, world.class_pictures("dog", 16, seed=seed))
        cats = metrics.class_drift(before, world.class_pictures("cat", 16, seed=seed))
        assert abs(other_dogs) < 0.01, (seed, other_dogs)
        assert cats > other_dogs + 0.01, (seed, other_dogs, cats)


def test_class_drift_needs_pictures_of_the_same_seeds_on_both_sides():
    with pytest.raises(ValueError):
        metrics.class_drift(world.class_pictures("dog", 4, seed=1), world.class_pictures("dog", 3, seed=1))
    with pytest.raises(ValueError):
        metrics.class_drift(world.class_pictures("dog", 1, seed=1), world.class_pictures("dog", 1, seed=2))
