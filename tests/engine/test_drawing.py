"""Drawing: count, size and seeds as asked; seeds reproduce; LoRAs switch per request; long prompts flagged."""

from __future__ import annotations

import numpy as np
import pytest

from storage import contract


@pytest.fixture
def drawer(pipe, runtime):
    from engine.drawing import Drawer

    d = Drawer(pipe, runtime, cache_size=2)
    yield d
    d.forget_loras()


def _pixels(result):
    return [np.asarray(img) for img in result.images]


def test_draws_the_requested_count_and_size_and_returns_the_seeds(drawer):
    from engine.drawing import DrawRequest

    result = drawer.draw(DrawRequest("a photo of dog", n=3, steps=2, width=128, height=64))
    assert len(result.images) == 3 == len(result.seeds)
    assert all(img.size == (128, 64) for img in result.images)
    assert len(set(result.seeds)) == 3


def test_same_seed_gives_the_same_image(drawer):
    """A returned seed redraws its picture: exactly, for the same request; alone, up to batch rounding.

    Batched kernels may round differently from a batch of one (by a unit here and there on a CPU, more on a
    GPU), so "#2 of a batch equals seed #2 drawn alone" holds only within a small tolerance; what holds bit for
    bit on any platform is the same request drawn again."""
    from engine.drawing import DrawRequest

    first = drawer.draw(DrawRequest("a photo of cat", n=2, steps=2, seeds=[42]))
    assert first.seeds == [42, 43]
    repeat = drawer.draw(DrawRequest("a photo of cat", n=2, steps=2, seeds=first.seeds))
    assert np.array_equal(_pixels(first), _pixels(repeat))
    alone = drawer.draw(DrawRequest("a photo of cat", n=1, steps=2, seeds=[first.seeds[1]]))
    difference = np.abs(_pixels(first)[1].astype(int) - _pixels(alone)[0].astype(int))
    assert difference.mean() < 0.5 and difference.max() <= 8, (difference.mean(), difference.max())
    other = drawer.draw(DrawRequest("a photo of cat", n=1, steps=2, seeds=[7]))
    other_difference = np.abs(_pixels(first)[0].astype(int) - _pixels(other)[0].astype(int))
    assert other_difference.mean() > 10 * max(difference.mean(), 0.1)


def test_another_lora_gives_another_image_and_switching_back_restores_it(drawer, trained, random_lora):
    from engine.drawing import DrawRequest

    def at(lora):
        return _pixels(drawer.draw(DrawRequest("a photo of sks dog", n=1, steps=3, seeds=[5], lora=lora)))[0]

    base, mine, other = at(None), at(trained["result"].weights_path), at(random_lora)
    assert not np.array_equal(base, mine)
    assert not np.array_equal(mine, other)
    assert np.array_equal(at(trained["result"].weights_path), mine)
    assert np.array_equal(at(None), base)


def test_prompt_over_the_token_limit_is_reported_truncated(drawer):
    from engine.drawing import DrawRequest

    short = drawer.draw(DrawRequest("a photo of dog in paris", steps=1, seeds=[1]))
    assert not short.prompt_truncated and short.prompt_tokens == 6
    long = drawer.draw(DrawRequest("a photo of dog in paris " * 16, steps=1, seeds=[1]))
    assert long.prompt_truncated and long.prompt_tokens == 96 and long.token_limit == 75


@pytest.mark.parametrize(("n", "steps"), [(0, 2), (5, 2), (1, 0)])
def test_out_of_range_requests_are_refused_with_a_reason(drawer, n, steps):
    from engine.drawing import DrawError, DrawRequest

    with pytest.raises(DrawError):
        drawer.draw(DrawRequest("a photo of dog", n=n, steps=steps))


@pytest.mark.parametrize(("option", "value", "low", "high"), [
    ("strength", contract.MAX_STRENGTH + 0.5, 0, contract.MAX_STRENGTH),
    ("guidance", contract.MAX_GUIDANCE + 1, contract.MIN_GUIDANCE, contract.MAX_GUIDANCE),
    ("n", contract.MAX_IMAGES_PER_DRAW + 1, 1, contract.MAX_IMAGES_PER_DRAW),
    ("steps", contract.MAX_DRAW_STEPS + 1, 1, contract.MAX_DRAW_STEPS),
    ("variation_strength", 1.5, 0, 1),
])
def test_a_draw_job_outside_the_contracts_limits_is_refused_naming_the_contracts_limit(drawer, option, value, low,
                                                                                        high):
    """The limits are the job contract's, defined once in storage/contract.py; the engine repeats none of them."""
    from engine.drawing import DrawError, DrawRequest

    # A payload that skipped the contract's check at the edge (say, queued before a limit was lowered).
    fields = {**contract.DrawPayload(model_id=None, prompt="a photo of dog", steps=1).model_dump(), option: value}
    payload = contract.DrawPayload.model_construct(**fields)
    with pytest.raises(DrawError, match=f"^{option} must be between {low:g} and {high:g}$"):
        drawer.draw(DrawRequest.from_payload(payload))


def test_a_draw_job_is_drawn_with_its_own_options_and_draw_steps_only_where_it_names_none():
    from engine.drawing import DrawRequest

    payload = contract.DrawPayload(model_id=7, prompt="a photo of sks dog", n=2, steps=None, guidance=3.0,
                                   seeds=[4, 5], strength=0.5, sampler="euler", aspect_ratio="3:2")
    request = DrawRequest.from_payload(payload, lora=None, default_steps=12)
    assert (request.n, request.steps, request.guidance, request.seeds) == (2, 12, 3.0, [4, 5])
    assert (request.strength, request.sampler, request.aspect_ratio) == (0.5, "euler", "3:2")
    assert DrawRequest.from_payload(payload.model_copy(update={"steps": 30}), default_steps=12).steps == 30


def test_a_missing_lora_file_is_a_clear_draw_error(drawer, tmp_path):
    from engine.drawing import DrawError, DrawRequest

    with pytest.raises(DrawError, match="missing"):
        drawer.draw(DrawRequest("a photo of dog", steps=1, lora=tmp_path / "gone.safetensors"))


def test_variations_stay_close_to_their_picture_and_differ_from_each_other(drawer):
    from engine.drawing import DrawRequest

    def mean_gap(a, b) -> float:
        return float(np.abs(a.astype(float) - b.astype(float)).mean())

    original = _pixels(drawer.draw(DrawRequest("a photo of dog", n=1, steps=4, seeds=[5])))[0]
    unrelated = _pixels(drawer.draw(DrawRequest("a photo of dog", n=1, steps=4, seeds=[6])))[0]
    variations = drawer.draw(DrawRequest("a photo of dog", n=2, steps=4, seeds=[5, 5], variation_seeds=[100, 101],
                                         variation_strength=0.2))
    first, second = _pixels(variations)
    assert variations.seeds == [5, 5]
    assert not np.array_equal(first, second)
    # A light blend keeps the picture: each variation is nearer the original than another seed's picture is.
    assert mean_gap(first, original) < mean_gap(unrelated, original)
    assert mean_gap(second, original) < mean_gap(unrelated, original)
