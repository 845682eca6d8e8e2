"""Qwen-Image on its tiny model: detected, its prompt conditioned as the pipeline conditions it (the system turn of
34 tokens dropped), trained per its diffusers recipe, drawn with true CFG against " ", its LoRA copied under
`diffusion_model.` names. Training, reloading and resuming run with the other families (test_family_training.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

PROMPT = "a photo of sks dog"
CLASS_PROMPT = "a photo of dog in paris on the beach"  # longer than PROMPT: the batch is padded


@pytest.fixture(scope="module")
def qwen(family_pipe):
    return family_pipe("qwen-image")


def test_qwen_image_is_detected_as_its_own_family_with_the_model_cards_drawing_defaults(tiny_family_dir):
    from engine.detection import detect
    from engine.families import FAMILY_LIMITS

    family = detect(tiny_family_dir("qwen-image")).family
    assert (family.name, family.pipeline, family.draw_steps, family.guidance) == ("qwen-image", "QwenImagePipeline",
                                                                                 50, 4.0)
    assert family.negative_prompt and FAMILY_LIMITS["qwen-image"]["sizes"]["1:1"] == [1328, 1328]


def test_a_tokenizer_that_reads_the_system_turn_as_other_than_34_tokens_is_refused(qwen):
    """The pipeline drops 34 leading tokens whatever the tokenizer; the tiny one learns the system turn's words so
    that turn is 34 tokens, as with Qwen's own. Without those words it would be more, and prompts would be cut."""
    from engine.model_files import BaseModelError
    from engine.qwen_image import check_template, tokenize
    from engine.tiny_flux2 import tiny_qwen_tokenizer

    text, drop = qwen.prompt_template_encode, qwen.prompt_template_encode_start_idx
    assert drop == 34
    check_template(qwen.tokenizer, text, drop)
    ids = tokenize(qwen, [PROMPT])["input_ids"][0]
    # What is left after the drop starts with the prompt's first token: nothing of the system turn, nothing cut.
    assert ids[drop:].tolist()[:5] == qwen.tokenizer(PROMPT, add_special_tokens=False).input_ids
    plain = tiny_qwen_tokenizer()  # FLUX.2's and Z-Image's tiny tokenizer: no system-turn words
    with pytest.raises(BaseModelError, match="drops 34"):
        check_template(plain, text, drop)
    original = qwen.tokenizer
    qwen.tokenizer = plain
    try:
        with pytest.raises(BaseModelError):
            tokenize(qwen, [PROMPT])
    finally:
        qwen.tokenizer = original


def test_qwen_image_prompts_are_conditioned_exactly_as_the_pipeline_encodes_them(qwen):
    from engine.conditioning import count_tokens, encode_prompts

    embeds = encode_prompts(qwen, [PROMPT, CLASS_PROMPT])
    hidden, mask = embeds["encoder_hidden_states"], embeds["encoder_hidden_states_mask"]
    for row, prompt in enumerate((PROMPT, CLASS_PROMPT)):
        want, want_mask = qwen.encode_prompt(prompt, device="cpu")
        length = want.shape[1]
        assert want_mask is None  # one prompt alone has no padding
        assert torch.equal(hidden[row, :length], want[0]) and not hidden[row, length:].any()
        assert mask[row].tolist() == [1] * length + [0] * (hidden.shape[1] - length)
    # 512 positions after the drop, less the closing "<|im_end|>\n<|im_start|>assistant\n" (5 tokens)
    assert count_tokens(qwen, "a photo of sks dog in paris") == (7, 507)


def test_qwen_image_is_trained_on_the_flow_of_its_normalised_packed_latents(qwen, runtime, photos, monkeypatch):
    """An oracle answering ε - x0 on (z - latents_mean) / latents_std, packed as the pipeline packs, at t / 1000 of
    the recipe's scheduler (loaded with shift=3.0, which its dynamic shifting ignores), has zero loss."""
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImagePipeline

    from engine.conditioning import encode_prompts
    from engine.detection import family_of
    from engine.objectives import step_batch
    from engine.training import _objective, encode_images

    encoded = encode_images(qwen, photos[:2], 64)
    batch = step_batch(2, 5, encoded, encoded, 1000, family_of(qwen))
    config = qwen.vae.config
    mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1)
    std = torch.tensor(config.latents_std).view(1, -1, 1, 1)
    target = batch.noise - (batch.latents - mean) / std
    b, c, h, w = target.shape
    recipe = FlowMatchEulerDiscreteScheduler.from_config(qwen.scheduler.config, shift=3.0)
    seen = {}

    def oracle(hidden_states, timestep, encoder_hidden_states, encoder_hidden_states_mask, img_shapes, **kw):
        seen.update(t=timestep, mask=encoder_hidden_states_mask, shapes=img_shapes, tokens=hidden_states.shape)
        return (QwenImagePipeline._pack_latents(target, b, c, h, w),)

    monkeypatch.setattr(qwen.transformer, "forward", oracle)
    losses = _objective(qwen, runtime).per_example(qwen, batch, encode_prompts(qwen, [PROMPT, CLASS_PROMPT]))
    assert float(losses.max()) < 1e-10
    assert torch.allclose(seen["t"], recipe.timesteps[batch.timesteps] / 1000)
    assert seen["shapes"] == [[(1, h // 2, w // 2)]] * 2 and seen["tokens"] == (2, h * w // 4, 4 * c)
    assert seen["mask"] is not None and seen["mask"][0].sum() < seen["mask"][1].sum()
    # The same oracle on the unnormalised latents is not what the recipe trains on.
    target = batch.noise - batch.latents
    assert float(_objective(qwen, runtime).per_example(qwen, batch, encode_prompts(qwen, [PROMPT, PROMPT])).min()) > 1e-4


def test_qwen_image_draws_with_true_cfg_against_a_blank_negative_prompt_by_default(qwen, runtime):
    from engine.drawing import Drawer, DrawRequest

    drawer = Drawer(qwen, runtime)
    plain = drawer.draw(DrawRequest(prompt=PROMPT, seeds=[3], steps=3))
    assert (plain.family, plain.guidance, plain.sampler, plain.token_limit) == ("qwen-image", 4.0, "default", 507)
    with torch.inference_mode():
        want = qwen(PROMPT, negative_prompt=" ", true_cfg_scale=4.0, num_inference_steps=3, width=64, height=64,
                    generator=torch.Generator().manual_seed(3)).images[0]
    assert np.array_equal(np.asarray(plain.images[0]), np.asarray(want))
    negative = drawer.draw(DrawRequest(prompt=PROMPT, seeds=[3], steps=3, negative_prompt="blurry"))
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(negative.images[0]))
    # Variations start from the pipeline's own noise for the seed, packed as it packs it: strength 0 is the seed.
    same = drawer.draw(DrawRequest(prompt=PROMPT, seeds=[3], steps=3, variation_seeds=[9], variation_strength=1e-9))
    assert np.abs(np.asarray(same.images[0]).astype(int) - np.asarray(plain.images[0])).max() <= 1


def test_the_qwen_image_copy_for_other_tools_carries_comfyuis_diffusion_model_names(qwen, runtime, photos, make_spec,
                                                                                    tmp_path):
    from engine.training import remove_lora, train

    result = train(make_spec(tmp_path, photos, steps=2, learning_rate=5e-3, class_image_dir=None, sample_seeds=()),
                   pipe=qwen, runtime=runtime)
    remove_lora(qwen)
    comfy = load_file(str(result.kohya_path))
    keys = sorted(comfy)
    assert "diffusion_model.transformer_blocks.0.attn.to_q.lora_A.weight" in keys
    assert "diffusion_model.transformer_blocks.0.attn.to_out.0.lora_B.weight" in keys
    assert all(k.startswith("diffusion_model.") and k.endswith((".lora_A.weight", ".lora_B.weight")) for k in keys)
    # ComfyUI (comfy/lora.py model_lora_keys_unet) maps "diffusion_model.<name>" to its own model's weight
    # "diffusion_model.<name>.weight", and its Qwen-Image model (comfy/ldm/qwen_image/model.py) names the trained
    # modules as diffusers does (transformer_blocks.N.attn.to_q/to_k/to_v/to_out.0): each pair must land on a
    # weight of that name and shape.
    weights = qwen.transformer.state_dict()
    for module in {k.rsplit(".lora_", 1)[0] for k in keys}:
        target = weights[module.removeprefix("diffusion_model.") + ".weight"]
        delta = comfy[f"{module}.lora_B.weight"] @ comfy[f"{module}.lora_A.weight"]
        assert delta.shape == target.shape, module


def test_qwen_image_identifiers_are_checked_against_its_qwen2_tokenizer(qwen):
    from engine.conditioning import identifier_pool, prompt_tokenizers
    from engine.tiny_flux2 import tiny_qwen_tokenizer

    assert [type(t).__name__ for t in prompt_tokenizers(qwen)] == ["Qwen2Tokenizer"]
    assert identifier_pool(qwen)[:2] == ["sks", "ohwx"]  # the tiny vocabulary holds the whole pool
    original = qwen.tokenizer
    qwen.tokenizer = tiny_qwen_tokenizer(words=["a", "ohwx"])  # one that splits "sks" but not "ohwx"
    try:
        assert identifier_pool(qwen)[0] == "ohwx"
    finally:
        qwen.tokenizer = original


def test_qwen_image_holds_the_class_row_to_the_frozen_models_own_prediction_by_default(qwen, runtime, photos, make_spec,
                                                                                       tmp_path):
    """Its step comes apart into noise and prediction, so output preservation (Kabina's default prior) serves it:
    no class pictures are drawn, and the class row's loss is zero before the LoRA has learnt anything."""
    from engine.detection import family_of
    from engine.training import remove_lora, train

    spec = make_spec(tmp_path, photos, prior=None, steps=3, learning_rate=5e-3, sample_seeds=())
    assert spec.prior_method(family_of(qwen)) == "output"
    progress: list[dict] = []
    result = train(spec, progress.append, pipe=qwen, runtime=runtime)
    remove_lora(qwen)
    steps = [p for p in progress if p["stage"] == "training"]
    assert steps[0]["class_loss"] < 1e-6 < steps[-1]["class_loss"]  # LoRA B starts at zero: the base's own answer
    assert not list((tmp_path / "class").glob("*.png")) and result.weights_path.exists()
