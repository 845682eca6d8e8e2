"""Z-Image on its tiny model: detected (Turbo by its name), trained per its diffusers recipe, drawn with its
defaults and a negative prompt, its LoRA copy under `diffusion_model.` names."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

PROMPT = "a photo of sks dog"


@pytest.fixture(scope="module")
def zimage(family_pipe):
    return family_pipe("z-image")


def test_z_image_and_z_image_turbo_are_detected_and_the_turbo_draws_in_few_steps(tiny_family_dir, tmp_path):
    from engine.detection import detect

    folder = tiny_family_dir("z-image")
    assert detect(folder).family.name == "z-image"
    turbo = tmp_path / "Z-Image-Turbo"
    shutil.copytree(folder, turbo, ignore=shutil.ignore_patterns("*.safetensors"))
    family = detect(turbo).family
    assert (family.name, family.draw_steps, family.guidance, family.negative_prompt) == ("z-image-turbo", 9, 0.0,
                                                                                          False)


def test_z_image_is_trained_on_negated_predictions_at_inverted_timesteps(zimage, runtime, photos, monkeypatch):
    """An oracle answering x0 - ε (Z-Image predicts the negated flow) at (1000 - t) / 1000 has zero loss."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from engine.conditioning import encode_prompts
    from engine.detection import family_of
    from engine.objectives import step_batch
    from engine.training import _objective, encode_images

    family = family_of(zimage)
    batch = step_batch(2, 5, encode_images(zimage, photos[:2], 64), None, 1000, family)
    vae = zimage.vae.config
    x0 = (batch.latents - vae.shift_factor) * vae.scaling_factor
    reference = FlowMatchEulerDiscreteScheduler.from_config(zimage.scheduler.config)
    seen = {}

    def oracle(frames, t, captions, return_dict=False, **kw):
        seen.update(frames=frames, t=t, captions=captions)
        return ([(x0[i] - batch.noise[i]).unsqueeze(1) for i in range(len(frames))],)

    monkeypatch.setattr(zimage.transformer, "forward", oracle)
    embeds = encode_prompts(zimage, [PROMPT])
    losses = _objective(zimage, runtime).per_example(zimage, batch, embeds)
    assert float(losses.max()) < 1e-10
    assert torch.allclose(seen["t"], (1000 - reference.timesteps[batch.timesteps]) / 1000)
    assert seen["frames"][0].shape == (4, 1, *x0.shape[2:])
    # The pipeline's own conditioning: the prompt's real tokens only, from the second-to-last layer.
    (want,), _ = zimage.encode_prompt(PROMPT, device="cpu", do_classifier_free_guidance=False)
    assert torch.equal(seen["captions"][0], want)


def test_z_image_draws_with_its_defaults_and_reads_a_negative_prompt(zimage, runtime):
    import numpy as np

    from engine.drawing import Drawer, DrawRequest

    drawer = Drawer(zimage, runtime)
    plain = drawer.draw(DrawRequest(prompt=PROMPT, seeds=[3], steps=3))
    assert (plain.family, plain.guidance, plain.sampler) == ("z-image", 5.0, "default")
    negative = drawer.draw(DrawRequest(prompt=PROMPT, seeds=[3], steps=3, negative_prompt="blurry"))
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(negative.images[0]))
    assert drawer.count_tokens("a photo of sks dog in paris")[0] == 7


def test_the_z_image_copy_for_other_tools_carries_diffusion_model_names(zimage, runtime, photos, make_spec, tmp_path):
    from engine.training import remove_lora, train

    result = train(make_spec(tmp_path, photos, steps=2, learning_rate=5e-3, class_image_dir=None, sample_seeds=()),
                   pipe=zimage, runtime=runtime)
    remove_lora(zimage)
    keys = sorted(load_file(str(result.kohya_path)))
    assert "diffusion_model.layers.0.attention.to_q.lora_A.weight" in keys
    assert all(k.startswith("diffusion_model.") and k.endswith((".lora_A.weight", ".lora_B.weight")) for k in keys)
