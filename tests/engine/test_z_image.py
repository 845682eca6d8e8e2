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


# What ComfyUI maps a Z-Image LoRA's `diffusion_model.<diffusers module>` names to, for the tiny model (dim 32),
# as read in Comfy-Org/ComfyUI: comfy/lora.py @ 17358c8 (model_lora_keys_unet, the Lumina2 branch, which registers
# "diffusion_model." + each name of comfy.utils.z_image_to_diffusers) and comfy/utils.py @ b3be02d
# (z_image_to_diffusers: diffusers' separate to_q/to_k/to_v are slices (dim 0, offset, width) of ComfyUI's fused
# attention.qkv; to_out.0 is attention.out; layers, noise_refiner and context_refiner alike). A LoRA pair
# `X.lora_A.weight` / `X.lora_B.weight` with no alpha adds lora_B @ lora_A to that target (slice).
COMFY_Z_IMAGE_TARGETS = {
    "diffusion_model.layers.0.attention.to_q": ("diffusion_model.layers.0.attention.qkv.weight", (0, 0, 32)),
    "diffusion_model.layers.0.attention.to_k": ("diffusion_model.layers.0.attention.qkv.weight", (0, 32, 32)),
    "diffusion_model.layers.0.attention.to_v": ("diffusion_model.layers.0.attention.qkv.weight", (0, 64, 32)),
    "diffusion_model.layers.0.attention.to_out.0": ("diffusion_model.layers.0.attention.out.weight", None),
    "diffusion_model.noise_refiner.0.attention.to_k": ("diffusion_model.noise_refiner.0.attention.qkv.weight",
                                                       (0, 32, 32)),
    "diffusion_model.context_refiner.0.attention.to_v": ("diffusion_model.context_refiner.0.attention.qkv.weight",
                                                         (0, 64, 32)),
    "diffusion_model.context_refiner.0.attention.to_out.0": (
        "diffusion_model.context_refiner.0.attention.out.weight", None),
}


def test_the_z_image_copy_for_comfyui_patches_comfyuis_fused_weights_as_the_lora_does(zimage, runtime, photos,
                                                                                       make_spec, tmp_path):
    """Each exported pair lands where ComfyUI's Lumina2 key map puts it; patched the way ComfyUI patches (slices
    of the fused qkv), the base weights become exactly what the trained LoRA makes of them."""
    from engine.lora_files import ADAPTER
    from engine.training import remove_lora, train

    transformer = zimage.transformer
    result = train(make_spec(tmp_path, photos, steps=2, learning_rate=5e-3, class_image_dir=None, sample_seeds=()),
                   pipe=zimage, runtime=runtime)
    comfy = load_file(str(result.kohya_path))
    modules = sorted({k.rsplit(".lora_", 1)[0] for k in comfy})
    assert set(COMFY_Z_IMAGE_TARGETS) <= set(modules)
    assert all(k.endswith((".lora_A.weight", ".lora_B.weight")) for k in comfy)
    patched, merged = {}, {}
    with torch.no_grad():
        for module in modules:
            name = module.removeprefix("diffusion_model.")
            layer = transformer.get_submodule(name)
            block, _, part = name.rpartition(".attention.")
            target, offset = COMFY_Z_IMAGE_TARGETS.get(module) or _comfy_target(block, part)
            if target not in patched:
                patched[target] = _comfy_layout(transformer, target).clone()
                merged[target] = _comfy_layout(transformer, target).clone()
            delta = comfy[f"{module}.lora_B.weight"] @ comfy[f"{module}.lora_A.weight"]
            rows = slice(offset[1], offset[1] + offset[2]) if offset else slice(None)
            patched[target][rows] += delta
            merged[target][rows] += layer.get_delta_weight(ADAPTER)
    remove_lora(zimage)
    assert patched.keys() == merged.keys()
    assert all(torch.allclose(patched[t], merged[t], atol=1e-6) for t in patched)


def _comfy_target(block: str, part: str):
    """ComfyUI's target of the other attention modules, by the same rule the table spells out."""
    width = 32
    if part in ("to_q", "to_k", "to_v"):
        return f"diffusion_model.{block}.attention.qkv.weight", (0, "qkv".index(part[-1]) * width, width)
    assert part == "to_out.0", part
    return f"diffusion_model.{block}.attention.out.weight", None


def _comfy_layout(transformer, target: str):
    """A base weight as ComfyUI holds it: q, k and v stacked into one qkv; out is diffusers' to_out.0."""
    block = target.removeprefix("diffusion_model.").rpartition(".attention.")[0]
    attention = transformer.get_submodule(block + ".attention")
    if target.endswith(".qkv.weight"):
        return torch.cat([attention.to_q.base_layer.weight, attention.to_k.base_layer.weight,
                          attention.to_v.base_layer.weight])
    return attention.to_out[0].base_layer.weight
