"""FLUX.2 [klein] on its tiny model: detected at start, trained per its diffusers recipe, drawn with its defaults,
exported under the names ComfyUI reads; the CLI trains and draws on it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

REPO = Path(__file__).resolve().parents[2]
PROMPT = "a photo of sks dog"


@pytest.fixture(scope="module")
def klein(family_pipe):
    return family_pipe("flux2-klein")


def test_klein_and_its_undistilled_base_are_told_apart_by_the_model_index(tiny_family_dir, tmp_path):
    from engine.detection import detect

    folder = tiny_family_dir("flux2-klein")
    assert detect(folder).family.name == "flux2-klein"
    base = tmp_path / "klein-base"
    shutil.copytree(folder, base, ignore=shutil.ignore_patterns("*.safetensors"))
    index = base / "model_index.json"
    index.write_text(json.dumps({**json.loads(index.read_text()), "is_distilled": False}))
    family = detect(base).family
    assert (family.name, family.draw_steps, family.guidance) == ("flux2-klein-base", 50, 4.0)


def test_klein_is_trained_by_flow_matching_on_patchified_batch_normed_latents(klein, runtime, photos, monkeypatch):
    """An oracle answering the recipe's target (ε - x0 on patchified, BN-normalised latents) has zero loss."""
    from engine.detection import family_of

    family = family_of(klein)
    # Distinct batch-norm statistics, so a missing normalisation cannot go unseen (the shared pipe gets its own back).
    bn = klein.vae.bn
    saved = bn.running_mean.clone(), bn.running_var.clone()
    try:
        with torch.no_grad():
            bn.running_mean.copy_(torch.linspace(-0.5, 0.5, bn.num_features))
            bn.running_var.copy_(torch.linspace(0.5, 2.0, bn.num_features))
        _check_the_oracle_loss_vanishes(klein, runtime, photos, monkeypatch, family)
    finally:
        with torch.no_grad():
            bn.running_mean.copy_(saved[0])
            bn.running_var.copy_(saved[1])


def _check_the_oracle_loss_vanishes(klein, runtime, photos, monkeypatch, family) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline

    from engine.conditioning import encode_prompts
    from engine.objectives import step_batch
    from engine.training import _objective, encode_images

    encoded = encode_images(klein, photos[:2], 64)
    batch = step_batch(3, 7, encoded, encoded, 1000, family)
    patches = Flux2KleinPipeline._patchify_latents(batch.latents)
    bn = klein.vae.bn
    x0 = (patches - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + 1e-4)
    noise = Flux2KleinPipeline._patchify_latents(batch.noise)
    reference = FlowMatchEulerDiscreteScheduler.from_config(klein.scheduler.config)
    sigma = reference.sigmas[batch.timesteps].view(-1, 1, 1, 1)
    seen = {}

    def oracle(hidden_states, timestep, guidance, encoder_hidden_states, txt_ids, img_ids, **kw):
        seen.update(hidden=hidden_states, timestep=timestep, guidance=guidance, context=encoder_hidden_states,
                    txt_ids=txt_ids, img_ids=img_ids)
        return (Flux2KleinPipeline._pack_latents(noise - x0),)

    monkeypatch.setattr(klein.transformer, "forward", oracle)
    embeds = encode_prompts(klein, [PROMPT, "a photo of dog"])
    losses = _objective(klein, runtime).per_example(klein, batch, embeds)
    assert float(losses.max()) < 1e-10
    noisy = (1 - sigma) * x0 + sigma * noise
    assert torch.allclose(seen["hidden"], Flux2KleinPipeline._pack_latents(noisy), atol=1e-5)
    assert torch.allclose(seen["timestep"], reference.timesteps[batch.timesteps] / 1000)
    assert seen["guidance"] is None
    # The pipeline's own prompt encoding: three Qwen3 layers side by side, 512 positions, 4-axis ids.
    want, want_ids = klein.encode_prompt([PROMPT, "a photo of dog"], device="cpu")
    assert torch.equal(seen["context"], want) and seen["context"].shape[1:] == (512, 3 * 32)
    assert torch.equal(seen["txt_ids"], want_ids.to(seen["txt_ids"].device))
    assert seen["img_ids"].shape == (2, noisy.shape[2] * noisy.shape[3], 4)


def test_klein_draws_with_its_distilled_defaults_and_no_negative_prompt(klein, runtime):
    from engine.drawing import Drawer, DrawError, DrawRequest

    drawer = Drawer(klein, runtime)
    result = drawer.draw(DrawRequest(prompt=PROMPT, seeds=[3]))
    assert (result.family, result.steps, result.guidance, result.sampler) == ("flux2-klein", 4, 1.0, "default")
    assert result.images[0].size == (64, 64)
    with pytest.raises(DrawError, match="without a negative prompt"):
        drawer.draw(DrawRequest(prompt=PROMPT, negative_prompt="blurry"))
    with pytest.raises(DrawError, match="no sampler"):
        drawer.draw(DrawRequest(prompt=PROMPT, sampler="dpm++2m-karras"))
    tokens, limit = drawer.count_tokens("a photo of sks dog in paris")
    assert tokens == 7  # every word one token of the Qwen vocabulary, spaces included
    assert limit == 512 - len(klein.tokenizer(klein.tokenizer.apply_chat_template(
        [{"role": "user", "content": ""}], tokenize=False, add_generation_prompt=True, enable_thinking=False),
        add_special_tokens=False).input_ids)


def test_klein_variations_start_from_the_pipelines_own_noise_shape(klein, runtime):
    from engine.drawing import Drawer, DrawRequest

    drawer = Drawer(klein, runtime)
    plain = drawer.draw(DrawRequest(prompt=PROMPT, seeds=[4], steps=2))
    same = drawer.draw(DrawRequest(prompt=PROMPT, seeds=[4], steps=2, variation_seeds=[9], variation_strength=1e-6))
    other = drawer.draw(DrawRequest(prompt=PROMPT, seeds=[4], steps=2, variation_seeds=[9], variation_strength=0.5))
    a, b, c = (np.asarray(r.images[0]).astype(int) for r in (plain, same, other))
    assert np.abs(a - b).max() <= 1  # a vanishing variation is the seed's own picture: the noise is laid out alike
    assert not np.array_equal(a, c)


def test_the_comfyui_copy_uses_bfl_names_with_q_k_v_fused_exactly(klein, runtime, photos, make_spec, tmp_path):
    from safetensors.torch import load_file

    from engine.lora_files import ADAPTER, adapter_state
    from engine.training import remove_lora, train

    result = train(make_spec(tmp_path, photos, steps=2, learning_rate=5e-3, class_image_dir=None, sample_seeds=()),
                   pipe=klein, runtime=runtime)
    peft = adapter_state(klein.transformer, ADAPTER)
    remove_lora(klein)
    comfy = load_file(str(result.kohya_path))
    assert sorted(comfy) == sorted(f"diffusion_model.{m}.lora_{ab}.weight" for ab in "AB" for m in (
        "double_blocks.0.img_attn.qkv", "double_blocks.0.img_attn.proj", "single_blocks.0.linear1",
        "single_blocks.0.linear2"))
    fused = comfy["diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight"] @ \
        comfy["diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight"]
    parts = [peft[f"transformer_blocks.0.attn.{p}.lora_B.weight"] @ peft[f"transformer_blocks.0.attn.{p}.lora_A.weight"]
             for p in ("to_q", "to_k", "to_v")]
    assert torch.allclose(fused, torch.cat(parts), atol=1e-7)
    with safe_open(str(result.kohya_path), "pt") as handle:
        assert handle.metadata()["modelspec.architecture"] == "flux-2-klein/lora"


def test_tiny_klein_trains_and_draws_from_the_command_line(tmp_path, make_photo):
    env = dict(os.environ, DATA_DIR=str(tmp_path / "data"), DEVICE="cpu", PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1",
               NUM_CLASS_IMAGES="1")
    for name in ("DRAW_STEPS", "TRAIN_STEPS", "BASE_MODEL"):
        env.pop(name, None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "engine", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)

    built = run("tiny-model", "klein", "--family", "flux2-klein")
    assert built.returncode == 0, built.stderr[-2000:]
    assert "Flux2KleinPipeline" in built.stdout
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(3):
        make_photo(seed, (80, 64)).save(photos / f"p{seed}.png")
    trained = run("train", "--base-model", "klein", "--photos", "photos", "--class", "dog", "--out", "out",
                  "--steps", "3")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "a photo of sks dog" in trained.stdout
    drawn = run("draw", "--base-model", "klein", "--lora", "out/lora.safetensors", "--out", "pics", "--n", "1",
                "--seed", "2", "--ar", "16:9", PROMPT)
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    assert "flux2-klein: 72x40, 4 steps, default, guidance 1.0" in drawn.stderr


# diffusers' FLUX.2 module → the name ComfyUI loads its LoRA pair under. ComfyUI (Comfy-Org/ComfyUI comfy/lora.py
# @ 17358c8, model_lora_keys_unet) registers every weight of its own model as "diffusion_model.<name>" (the
# "generic lora format"); its FLUX.2 is comfy/ldm/flux (double_blocks: img_attn.qkv, img_attn.proj, img_mlp.0/.2,
# txt_* alike; single_blocks: linear1, linear2). comfy/utils.py @ b3be02d flux_to_diffusers pairs the diffusers
# names with those (to_q/to_k/to_v → slices of img_attn.qkv, add_*_proj → txt_attn.qkv, ff.linear_in → img_mlp.0,
# "attn.to_qkv_mlp_proj" → linear1 and "attn.to_out" → linear2 marked "# Flux 2").
COMFY_FLUX2_NAMES = {
    ("transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k", "transformer_blocks.0.attn.to_v"):
        "diffusion_model.double_blocks.0.img_attn.qkv",
    ("transformer_blocks.0.attn.add_q_proj", "transformer_blocks.0.attn.add_k_proj",
     "transformer_blocks.0.attn.add_v_proj"): "diffusion_model.double_blocks.0.txt_attn.qkv",
    ("transformer_blocks.0.attn.to_out.0",): "diffusion_model.double_blocks.0.img_attn.proj",
    ("transformer_blocks.0.attn.to_add_out",): "diffusion_model.double_blocks.0.txt_attn.proj",
    ("transformer_blocks.0.ff.linear_in",): "diffusion_model.double_blocks.0.img_mlp.0",
    ("transformer_blocks.0.ff.linear_out",): "diffusion_model.double_blocks.0.img_mlp.2",
    ("transformer_blocks.0.ff_context.linear_in",): "diffusion_model.double_blocks.0.txt_mlp.0",
    ("transformer_blocks.0.ff_context.linear_out",): "diffusion_model.double_blocks.0.txt_mlp.2",
    ("single_transformer_blocks.3.attn.to_qkv_mlp_proj",): "diffusion_model.single_blocks.3.linear1",
    ("single_transformer_blocks.3.attn.to_out",): "diffusion_model.single_blocks.3.linear2",
}


def test_the_comfyui_copy_names_every_flux2_module_as_comfyui_loads_it():
    from engine.flux2 import bfl_state

    generator = torch.Generator().manual_seed(0)
    peft = {}
    for modules in COMFY_FLUX2_NAMES:
        for module in modules:
            peft[f"{module}.lora_A.weight"] = torch.randn(2, 8, generator=generator)
            peft[f"{module}.lora_B.weight"] = torch.randn(8, 2, generator=generator)
    comfy = bfl_state(peft, scale=0.5)
    assert sorted(comfy) == sorted(f"{name}.lora_{ab}.weight" for name in COMFY_FLUX2_NAMES.values() for ab in "AB")
    for modules, name in COMFY_FLUX2_NAMES.items():
        # ComfyUI adds lora_B @ lora_A (no alpha in the file: a scale of 1) to the whole fused weight.
        delta = comfy[f"{name}.lora_B.weight"] @ comfy[f"{name}.lora_A.weight"]
        parts = [0.5 * peft[f"{m}.lora_B.weight"] @ peft[f"{m}.lora_A.weight"] for m in modules]
        assert torch.allclose(delta, torch.cat(parts), atol=1e-6), name
