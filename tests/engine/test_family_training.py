"""DreamBooth-LoRA on SD2-v, SDXL and FLUX.1: each family's objective and conditioning, files that reload exactly.

The objective tests replace the denoiser by an oracle that answers with the target the family's recipe defines,
computed here independently (velocity for SD2-768-v; ε - x0 on (z - shift) · scale for FLUX): the loss must then
vanish. Any other target, latent normalisation or conditioning makes it non-zero.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from safetensors import safe_open

TRAINED_FAMILIES = ["sd2", "sdxl", "flux", "flux-schnell", "flux2-klein", "z-image", "qwen-image"]
PROMPT = "a photo of sks dog"


def _draw(pipe, seed: int = 11) -> np.ndarray:
    from engine.detection import family_of
    from engine.drawing import render

    family = family_of(pipe)
    image = render(pipe, [PROMPT], [torch.Generator().manual_seed(seed)], steps=3, guidance=family.guidance or 2.0,
                   width=64, height=64)[0]
    return np.asarray(image).astype(int)


@pytest.fixture(scope="module")
def fresh(tiny_family_dir):
    """`fresh(name)` → that family's tiny model loaded by diffusers itself (not our loader), once per module;
    every LoRA is unloaded again before it is handed out. Its weights are copied out of the files diffusers mapped
    them from, as the engine holds its own (engine.base_model.own_memory): the CPU's kernels round by alignment,
    and "the same picture" here means the same weights give it, wherever they were read from."""
    import diffusers

    from engine.base_model import own_memory
    from engine.detection import detect

    loaded = {}

    def get(name: str):
        if name not in loaded:
            folder = tiny_family_dir(name)
            pipe = getattr(diffusers, detect(folder).family.pipeline).from_pretrained(str(folder))
            own_memory(pipe)
            pipe.set_progress_bar_config(disable=True)
            loaded[name] = pipe
        loaded[name].unload_lora_weights()
        return loaded[name]

    return get


@pytest.fixture(scope="module")
def trained(tmp_path_factory, family_pipe, runtime, photos, make_spec):
    """One short training per family (with prior preservation), and what the trained pipeline draws at seed 11."""
    from engine.training import evaluation_loss, remove_lora, train

    runs = {}
    for name in TRAINED_FAMILIES:
        pipe = family_pipe(name)
        spec = make_spec(tmp_path_factory.mktemp(name), photos, steps=6, learning_rate=5e-3, num_class_images=1,
                         class_image_steps=2, sample_seeds=(), checkpoint_every=0)
        before = evaluation_loss(pipe, spec, runtime)
        result = train(spec, pipe=pipe, runtime=runtime)
        runs[name] = {"result": result, "image": _draw(pipe), "before": before,
                      "after": evaluation_loss(pipe, spec, runtime)}
        remove_lora(pipe)
    return runs


@pytest.mark.parametrize("name", TRAINED_FAMILIES)
def test_training_lowers_the_instance_loss_and_changes_the_picture(name, trained, fresh):
    run = trained[name]
    assert run["after"] < run["before"], (run["before"], run["after"])
    assert not np.array_equal(_draw(fresh(name)), run["image"]), "training changed nothing visible"


@pytest.mark.parametrize("name", TRAINED_FAMILIES)
def test_the_diffusers_lora_reloads_in_a_fresh_pipeline_and_draws_the_same_picture(name, trained, fresh):
    pipe = fresh(name)
    pipe.load_lora_weights(str(trained[name]["result"].weights_path), adapter_name="mine")
    assert np.array_equal(_draw(pipe), trained[name]["image"])


@pytest.mark.parametrize("name", TRAINED_FAMILIES)
def test_the_kohya_comfyui_copy_reloads_through_diffusers_converters_to_the_same_picture(name, trained, fresh):
    pipe = fresh(name)
    pipe.load_lora_weights(str(trained[name]["result"].kohya_path), adapter_name="kohya")
    assert np.abs(_draw(pipe) - trained[name]["image"]).max() <= 1


@pytest.mark.parametrize(
    ("name", "prefix", "version", "v2", "v_param"),
    [("sd2", "lora_unet_down_blocks_0_attentions_0_", "sd_v2_v", "True", "True"),
     ("sdxl", "lora_unet_input_blocks_", "sdxl_base_v1-0", "False", "False"),
     ("flux", "lora_transformer_single_transformer_blocks_0_attn_to_q", "flux1", "False", "False")],
)
def test_the_kohya_copy_has_the_names_and_metadata_other_tools_read(name, prefix, version, v2, v_param, trained):
    with safe_open(str(trained[name]["result"].kohya_path), "pt") as handle:
        keys, meta = list(handle.keys()), handle.metadata()
    assert any(k.startswith(prefix) and k.endswith(".lora_down.weight") for k in keys), sorted(keys)[:5]
    assert all(k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha")) for k in keys)
    assert (meta["ss_base_model_version"], meta["ss_v2"], meta["ss_v_parameterization"]) == (version, v2, v_param)
    assert meta["modelspec.architecture"].endswith("/lora") and meta["modelspec.resolution"] == "64x64"
    if name == "sdxl":
        assert any(k.startswith("lora_unet_middle_block_1_") for k in keys)
        assert not any("down_blocks" in k for k in keys)


def test_sdxl_text_encoder_lora_covers_both_encoders_and_reloads_in_both_formats(family_pipe, runtime, photos, make_spec,
                                                                                 tmp_path, fresh):
    from engine.training import remove_lora, train

    pipe = family_pipe("sdxl")
    result = train(make_spec(tmp_path, photos, steps=3, learning_rate=5e-3, train_text_encoder=True, sample_seeds=(),
                             class_image_dir=None), pipe=pipe, runtime=runtime)
    image = _draw(pipe)
    remove_lora(pipe)
    with safe_open(str(result.kohya_path), "pt") as handle:
        prefixes = {k.split("_text_model")[0] for k in handle.keys() if "_text_model_" in k}  # noqa: SIM118
    assert prefixes == {"lora_te1", "lora_te2"}
    for path in (result.weights_path, result.kohya_path):
        pipe = fresh("sdxl")
        pipe.load_lora_weights(str(path), adapter_name="te")
        assert np.abs(_draw(pipe) - image).max() <= (0 if path == result.weights_path else 1)


@pytest.mark.parametrize(("name", "prior"), [(name, "class-images") for name in
                                             ("sdxl", "flux", "flux2-klein", "z-image", "qwen-image")]
                         + [("flux2-klein", "output"), ("z-image", "output"), ("qwen-image", "output")])
def test_a_stopped_training_resumes_to_the_same_weights(name, prior, family_pipe, runtime, photos, make_spec,
                                                        tmp_path):
    from safetensors.torch import load_file

    from engine.training import TrainingStopped, remove_lora, train

    pipe = family_pipe(name)
    options = dict(prior=prior, steps=4, learning_rate=5e-3, num_class_images=1, class_image_steps=2,
                   sample_seeds=(), class_image_dir=tmp_path / "class", checkpoint_every=100)
    straight = train(make_spec(tmp_path / "straight", photos, **options), pipe=pipe, runtime=runtime)
    spec = make_spec(tmp_path / "stopped", photos, **options)
    progress: list[dict] = []
    with pytest.raises(TrainingStopped):
        train(spec, progress.append, lambda: sum(p["stage"] == "training" for p in progress) >= 2, pipe=pipe,
              runtime=runtime)
    resumed = train(spec, pipe=pipe, runtime=runtime)
    remove_lora(pipe)
    assert resumed.resumed_from == 2
    a, b = load_file(str(straight.weights_path)), load_file(str(resumed.weights_path))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_flux_refuses_a_text_encoder_lora_with_a_reason(family_pipe, runtime, photos, make_spec, tmp_path):
    from engine.training import train

    with pytest.raises(ValueError, match="text-encoder LoRA"):
        train(make_spec(tmp_path, photos, steps=1, train_text_encoder=True), pipe=family_pipe("flux"), runtime=runtime)


# --- the objectives, against oracles ----------------------------------------------------------------------------


def _batch(pipe, photos, family, seed: int = 3):
    from engine.objectives import step_batch
    from engine.training import encode_images

    encoded = encode_images(pipe, photos[:2], 64)
    return step_batch(0, seed, encoded, encoded, 1000, family)


def test_sd2_768_v_is_trained_to_predict_the_velocity(family_pipe, runtime, photos, monkeypatch):
    from engine.conditioning import encode_prompts
    from engine.detection import family_of
    from engine.training import _objective

    pipe = family_pipe("sd2")
    objective = _objective(pipe, runtime)
    batch = _batch(pipe, photos, family_of(pipe))
    batch.timesteps = torch.tensor([500, 900])  # where velocity and noise are far apart
    scale = pipe.vae.config.scaling_factor
    x0, noise = batch.latents * scale, batch.noise
    config = pipe.scheduler.config  # the model's own: scaled_linear betas, v_prediction
    betas = torch.linspace(config.beta_start**0.5, config.beta_end**0.5, 1000, dtype=torch.float64) ** 2
    alpha_bar = torch.cumprod(1 - betas, 0)[batch.timesteps].float().view(-1, 1, 1, 1)
    velocity = alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0  # Salimans & Ho's v

    def oracle(sample, timestep, encoder_hidden_states, **kwargs):
        return types.SimpleNamespace(sample=velocity)

    monkeypatch.setattr(pipe.unet, "forward", oracle)
    losses = objective.per_example(pipe, batch, encode_prompts(pipe, [PROMPT, "a photo of dog"]))
    assert objective.prediction_type == "v_prediction"
    assert float(losses.max()) < 1e-10
    # The same oracle, answering with the noise instead: what an epsilon loss would want, and not what it gets.
    monkeypatch.setattr(pipe.unet, "forward", lambda *a, **k: types.SimpleNamespace(sample=noise))
    assert float(objective.per_example(pipe, batch, encode_prompts(pipe, [PROMPT, "a photo of dog"])).min()) > 1e-3


def test_sdxl_unet_is_given_the_pooled_prompt_and_the_photos_size_and_crop(family_pipe, runtime, make_photo, monkeypatch):
    import io

    from engine.conditioning import encode_prompts
    from engine.detection import family_of
    from engine.photos import load_photo_set
    from engine.training import TrainSpec, _objective, _time_ids

    pipe = family_pipe("sdxl")
    sources = []
    for seed, size in ((1, (120, 90)), (2, (70, 110))):
        out = io.BytesIO()
        make_photo(seed, size).save(out, format="PNG")
        sources.append((f"p{seed}.png", out.getvalue()))
    photo_set = load_photo_set(sources, 64)
    # 120x90 → 85x64, left 10; 70x110 → 64x101, top 18: (original height, width, crop top, left).
    assert [g.as_tuple() for g in photo_set.geometry] == [(90, 120, 0, 10), (110, 70, 18, 0)]
    spec = TrainSpec(photos=photo_set.images, class_word="dog", token="sks", output_dir=None)
    batch = _batch(pipe, photo_set.images, family_of(pipe))
    seen = {}

    def oracle(sample, timestep, encoder_hidden_states, added_cond_kwargs=None, **kwargs):
        seen.update(context=encoder_hidden_states, **(added_cond_kwargs or {}))
        return types.SimpleNamespace(sample=torch.zeros_like(sample))

    monkeypatch.setattr(pipe.unet, "forward", oracle)
    embeds = encode_prompts(pipe, [PROMPT, "a photo of dog"])
    _objective(pipe, runtime).per_example(pipe, batch, embeds, _time_ids(pipe, spec, batch, 64))
    instance = photo_set.geometry[batch.picks[0]].as_tuple()
    assert seen["time_ids"].tolist() == [[*instance, 64, 64], [64, 64, 0, 0, 64, 64]]
    ids = pipe.tokenizer_2([PROMPT, "a photo of dog"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        pooled = pipe.text_encoder_2(ids).text_embeds
    assert torch.allclose(seen["text_embeds"], pooled)
    assert seen["context"].shape[-1] == pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size


@pytest.mark.parametrize("name", ["flux", "flux-schnell"])
def test_flux_is_trained_by_flow_matching_on_shifted_scaled_packed_latents(name, family_pipe, runtime, photos,
                                                                           monkeypatch):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    from engine.conditioning import encode_prompts
    from engine.detection import family_of
    from engine.training import _objective

    pipe = family_pipe(name)
    family = family_of(pipe)
    batch = _batch(pipe, photos, family)
    assert batch.timesteps.min() >= 0 and batch.timesteps.max() < 1000
    vae = pipe.vae.config
    assert (vae.shift_factor, vae.scaling_factor) == (0.1159, 0.3611)
    x0 = (batch.latents - vae.shift_factor) * vae.scaling_factor
    reference = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    sigma = reference.sigmas[batch.timesteps].view(-1, 1, 1, 1)
    b, c, h, w = x0.shape
    seen = {}

    def oracle(hidden_states, timestep, guidance, pooled_projections, encoder_hidden_states, txt_ids, img_ids, **kw):
        seen.update(hidden=hidden_states, timestep=timestep, guidance=guidance, pooled=pooled_projections)
        return (FluxPipeline._pack_latents(batch.noise - x0, b, c, h, w),)

    monkeypatch.setattr(pipe.transformer, "forward", oracle)
    embeds = encode_prompts(pipe, [PROMPT, "a photo of dog"])
    losses = _objective(pipe, runtime).per_example(pipe, batch, embeds)
    assert float(losses.max()) < 1e-10
    noisy = (1 - sigma) * x0 + sigma * batch.noise
    assert torch.allclose(seen["hidden"], FluxPipeline._pack_latents(noisy, b, c, h, w), atol=1e-6)
    assert torch.allclose(seen["timestep"], reference.timesteps[batch.timesteps] / 1000)
    assert seen["pooled"].shape == (2, pipe.text_encoder.config.hidden_size)
    if family.guidance_embedded:
        assert seen["guidance"].tolist() == [family.train_guidance] * 2
    else:
        assert seen["guidance"] is None


@pytest.mark.parametrize("name", ["sdxl", "flux"])
def test_gradient_checkpointing_the_cuda_default_for_flux_trains_the_same_lora(name, family_pipe, runtime, photos,
                                                                              make_spec, tmp_path):
    """Checkpointing only recomputes activations: on the CPU (fp32) the weights must come out identical."""
    from safetensors.torch import load_file

    from engine.training import remove_lora, train

    pipe = family_pipe(name)
    results = []
    for checkpointing in (False, True):
        spec = make_spec(tmp_path / str(checkpointing), photos, steps=2, learning_rate=5e-3, class_image_dir=None,
                         sample_seeds=(), gradient_checkpointing=checkpointing)
        during: list[bool] = []

        def on_progress(p: dict, seen: list[bool] = during) -> None:
            if p["stage"] == "training":
                seen.append(pipe.unet.is_gradient_checkpointing)  # FLUX: the transformer, under its alias

        results.append(load_file(str(train(spec, on_progress, pipe=pipe, runtime=runtime).weights_path)))
        assert during == [checkpointing] * 2
        assert not pipe.unet.is_gradient_checkpointing  # switched off again afterwards
    remove_lora(pipe)
    plain, checkpointed = results
    assert plain.keys() == checkpointed.keys()
    assert all(torch.allclose(plain[k], checkpointed[k], atol=1e-6) for k in plain)


def test_an_fp16_sdxl_vae_encodes_in_fp32_unless_a_fixed_vae_is_given(family_pipe, tiny_sdxl_dir, runtime, photos,
                                                                      tmp_path):
    """SDXL's stock VAE overflows in fp16 (force_upcast); an fp16-fix VAE (force_upcast false) runs in fp16."""
    import json
    import shutil

    from engine.base_model import load_base_pipeline
    from engine.training import encode_images

    pipe = family_pipe("sdxl")
    assert pipe.vae.config.force_upcast
    pipe.vae.to(torch.float16)
    try:
        half = encode_images(pipe, photos[:1], 64)
        assert pipe.vae.dtype == torch.float16  # put back as it was
        pipe.vae.to(torch.float32)
        assert torch.equal(half.mean, encode_images(pipe, photos[:1], 64).mean)  # fp32 maths on the fp16 weights
    finally:
        pipe.vae.to(torch.float32)
    fixed = tmp_path / "sdxl-vae-fp16-fix"
    shutil.copytree(tiny_sdxl_dir / "vae", fixed)
    config = fixed / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "force_upcast": False}))
    own = load_base_pipeline(tiny_sdxl_dir, runtime, vae=fixed)
    assert not own.vae.config.force_upcast
    own.vae.to(torch.float16)
    in_half = encode_images(own, photos[:1], 64)
    own.vae.to(torch.float32)
    assert not torch.equal(in_half.mean, encode_images(own, photos[:1], 64).mean)
