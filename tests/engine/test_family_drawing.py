"""Drawing on every family: the family's defaults, samplers, LoRA strength, aspect ratios and prompt limits."""

from __future__ import annotations

import numpy as np
import pytest

DRAWN = ["sd1", "sd2", "sdxl", "flux", "flux-schnell", "qwen-image"]


@pytest.fixture
def pipe_of(family_pipe, pipe):
    def get(name: str):
        return pipe if name == "sd1" else family_pipe(name)

    return get


@pytest.fixture(scope="module")
def random_loras(tmp_path_factory, tiny_family_dir, tiny_model_dir, runtime):
    """A random (visible) LoRA per family on its own targets, saved like a trained one."""
    import torch
    from peft import LoraConfig

    from engine import lora_files
    from engine.base_model import load_base_pipeline
    from engine.detection import family_of

    folder = tmp_path_factory.mktemp("random_loras")
    loras = {}
    for name in DRAWN:
        base = load_base_pipeline(tiny_model_dir if name == "sd1" else tiny_family_dir(name), runtime)
        family = family_of(base)
        torch.manual_seed(3)
        getattr(base, family.denoiser).add_adapter(
            LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=list(family.lora_targets)),
            adapter_name=lora_files.ADAPTER,
        )
        loras[name] = lora_files.save_lora(folder / f"{name}.safetensors", base)
    return loras


def _draw(drawer, **request):
    from engine.drawing import DrawRequest

    result = drawer.draw(DrawRequest(request.pop("prompt", "a photo of sks dog"), **{"steps": 2, "seeds": [5], **request}))
    return result, np.asarray(result.images[0]).astype(int)


@pytest.mark.parametrize("name", DRAWN)
def test_the_familys_defaults_and_native_size_are_used(name, pipe_of, runtime):
    from engine.drawing import Drawer, DrawRequest
    from engine.families import FAMILIES

    drawer = Drawer(pipe_of(name), runtime)
    family = drawer.family
    settings = drawer.check(DrawRequest("a photo of dog"))
    assert (settings["steps"], settings["guidance"], settings["sampler"]) == (
        family.draw_steps, family.guidance, family.default_sampler)
    assert family is FAMILIES[{"sd2": "sd2-v", "flux": "flux-dev"}.get(name, name)]
    result, pixels = _draw(drawer)
    assert pixels.shape == (64, 64, 3) and (result.width, result.height, result.family) == (64, 64, family.name)


@pytest.mark.parametrize(("name", "aspect", "size"), [("sd1", "3:2", (72, 48)), ("sdxl", "16:9", (72, 40)),
                                                      ("flux", "2:3", (48, 72)), ("sd2", "1:1", (64, 64))])
def test_an_aspect_ratio_becomes_a_size_on_the_models_grid_within_its_budget(name, aspect, size, pipe_of, runtime):
    from engine.drawing import Drawer

    result, pixels = _draw(Drawer(pipe_of(name), runtime), aspect_ratio=aspect)
    assert (result.width, result.height) == size == (pixels.shape[1], pixels.shape[0])
    assert size[0] * size[1] <= 64 * 64


def test_an_aspect_ratio_with_a_width_is_refused(pipe, runtime):
    from engine.drawing import Drawer, DrawError

    with pytest.raises(DrawError, match="not both"):
        _draw(Drawer(pipe, runtime), aspect_ratio="3:2", width=64)


@pytest.mark.parametrize("name", DRAWN)
def test_strength_zero_is_the_base_picture_and_a_half_is_between(name, pipe_of, runtime, random_loras):
    from engine.drawing import Drawer

    drawer = Drawer(pipe_of(name), runtime)
    try:
        _, base = _draw(drawer)
        _, full = _draw(drawer, lora=random_loras[name])
        _, none = _draw(drawer, lora=random_loras[name], strength=0.0)
        _, half = _draw(drawer, lora=random_loras[name], strength=0.5)
        _, again = _draw(drawer, lora=random_loras[name])
    finally:
        drawer.forget_loras()
    assert np.array_equal(none, base)
    assert not np.array_equal(full, base) and np.array_equal(again, full)
    assert 0 < np.abs(half - base).mean() < np.abs(full - base).mean()


@pytest.mark.parametrize(("name", "other"), [("sd1", "euler-a"), ("sd2", "ddim"), ("sdxl", "euler"),
                                             ("sd1", "default"), ("flux", "dpm++2m")])
def test_another_sampler_draws_another_picture_and_the_models_own_comes_back(name, other, pipe_of, runtime):
    from engine.drawing import Drawer

    pipe = pipe_of(name)
    own = type(pipe.scheduler)
    drawer = Drawer(pipe, runtime)
    first, default = _draw(drawer, steps=4)
    second, changed = _draw(drawer, steps=4, sampler=other)
    _, repeat = _draw(drawer, steps=4, sampler=other)
    assert (first.sampler, second.sampler) == (drawer.family.default_sampler, other)
    assert not np.array_equal(default, changed) and np.array_equal(changed, repeat)
    assert type(pipe.scheduler) is own


@pytest.mark.parametrize("name", ["flux", "flux-schnell"])
def test_flux_refuses_samplers_that_are_not_flow_matching_and_says_which_are(name, family_pipe, runtime):
    from engine.drawing import Drawer, DrawError

    drawer = Drawer(family_pipe(name), runtime)
    with pytest.raises(DrawError) as refused:
        _draw(drawer, sampler="euler-a")
    assert "default, euler" in str(refused.value)
    with pytest.raises(DrawError, match="negative prompt"):
        _draw(drawer, negative_prompt="blurry")


def test_an_unknown_sampler_is_refused_with_the_list(pipe, runtime):
    from engine.drawing import Drawer, DrawError

    with pytest.raises(DrawError, match="dpm\\+\\+2m-karras, euler-a, euler, ddim, default"):
        _draw(Drawer(pipe, runtime), sampler="lms")


@pytest.mark.parametrize(("name", "limit"), [("sdxl", 75), ("sd2", 75), ("flux", 511), ("flux-schnell", 255)])
def test_prompt_and_negative_prompt_are_counted_with_the_tokenizer_the_model_reads(name, limit, family_pipe, runtime):
    from engine.drawing import Drawer

    drawer = Drawer(family_pipe(name), runtime)
    result, _ = _draw(drawer, prompt="a photo of sks dog in paris")
    assert (result.prompt_tokens, result.token_limit, result.prompt_truncated) == (7, limit, False)
    long = drawer.count_tokens("a photo of dog " * 130)
    assert long == (520, limit)
    if drawer.family.negative_prompt:
        # Within the job contract's 300 characters, past the 75 tokens CLIP reads.
        result, _ = _draw(drawer, negative_prompt="a " * 80)
        assert (result.negative_tokens, result.negative_truncated) == (80, True)


def test_the_sd1_negative_prompt_is_counted_like_the_prompt(pipe, runtime):
    from engine.drawing import Drawer

    result, _ = _draw(Drawer(pipe, runtime), negative_prompt="blurry low quality")
    assert (result.negative_tokens, result.negative_truncated) == (3, False)


def test_flux_variations_start_from_packed_noise_and_stay_close(family_pipe, runtime):
    from engine.drawing import Drawer

    drawer = Drawer(family_pipe("flux"), runtime)
    _, original = _draw(drawer, steps=3)
    _, other = _draw(drawer, steps=3, seeds=[6])
    result, variation = _draw(drawer, steps=3, variation_seeds=[100], variation_strength=0.2)
    assert result.seeds == [5]
    assert 0 < np.abs(variation - original).mean() < np.abs(other - original).mean()
