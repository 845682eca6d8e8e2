"""Qwen-Image: its text conditioning, its training step, its starting noise and the copy of its LoRA for other tools.

Everything here follows QwenImagePipeline (diffusers 0.42) and train_dreambooth_lora_qwen_image.py:
  - text: the prompt in the pipeline's own chat template (a system turn asking to describe the image, the user's
    turn, the assistant's turn opened); Qwen2.5-VL's last hidden state, its first `prompt_template_encode_start_idx`
    (34) positions dropped (the system turn), cut to 512 positions; each prompt encoded alone (the pipeline's and the
    recipe's compute_text_embeddings), then padded with zeros to the longest, with a mask of its real positions;
  - latents: the 3D causal VAE's posterior of a one-frame video (the frame dimension is squeezed here and put back
    for the VAE), normalised per channel: (z - latents_mean) / latents_std; packed 2x2 into tokens, with
    `img_shapes` (1, h/2, w/2) per picture for the transformer's rotary positions;
  - the step: x_t = (1 - σ) x_0 + σ ε at the recipe's timestep density over the scheduler's training sigmas (the
    recipe loads it with shift=3.0, which dynamic shifting ignores: the sigmas are unshifted, as here), the
    transformer given t / 1000 and the text mask (None when every position is real, as encode_prompt gives it);
    target ε - x_0, weighted by compute_loss_weighting_for_sd3; noise and prediction apart (noise, predict), so
    output preservation (the class row held to the frozen model's own prediction) serves it as it serves FLUX.1;
  - drawing: true CFG (`true_cfg_scale`, the model card's 4) against a negative prompt, " " when none is given
    (the pipeline runs no CFG without one);
  - the copy for other tools: `diffusion_model.<diffusers module>.lora_A/lora_B` (ComfyUI's Qwen-Image modules carry
    the diffusers names; engine.z_image.comfy_state writes them), read by diffusers' Qwen LoRA converter too.
"""

from __future__ import annotations

from typing import Any

from engine import qwen_chat
from engine.model_files import BaseModelError

MAX_SEQUENCE_LENGTH = qwen_chat.MAX_SEQUENCE_LENGTH  # QwenImagePipeline's default and the recipe's
TOKENIZER_MAX_LENGTH = 1024  # QwenImagePipeline.tokenizer_max_length: tokens read before the 512-position cut
NEGATIVE_PROMPT = " "  # the model card's: true CFG needs a negative prompt, and " " says nothing


def template(pipe) -> tuple[str, int]:
    """(the chat template with `{}` for the prompt, how many leading tokens the pipeline drops)."""
    return pipe.prompt_template_encode, int(pipe.prompt_template_encode_start_idx)


def check_template(tokenizer, text: str, drop: int) -> None:
    """The pipeline drops a fixed count of leading tokens, the system turn as Qwen's tokenizer reads it; a
    tokenizer that reads that turn as more or fewer tokens would have the pipeline cut the prompt or keep part of
    the system turn. Refuse such a tokenizer instead of training on a conditioning the pipeline never draws with."""
    prefix = text.split("{}")[0]
    count = len(tokenizer(prefix, add_special_tokens=False).input_ids)
    if count != drop:
        raise BaseModelError(f"this tokenizer reads Qwen-Image's system turn as {count} tokens, but the pipeline "
                             f"drops {drop}: prompts would be cut; use the model's own tokenizer")


def tokenize(pipe, prompts: list[str]) -> dict[str, Any]:
    """Token ids and mask of each prompt in the template, as the pipeline tokenizes them (padded to the longest)."""
    text, drop = template(pipe)
    check_template(pipe.tokenizer, text, drop)
    out = pipe.tokenizer([text.format(p) for p in prompts], max_length=TOKENIZER_MAX_LENGTH + drop, padding=True,
                         truncation=True, return_tensors="pt")
    return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}


def encode(pipe, ids: dict[str, Any]) -> dict[str, Any]:
    """`encoder_hidden_states` [B, L, D] (zero-padded) and `encoder_hidden_states_mask` [B, L] (1 for real ones)."""
    import torch

    encoder = pipe.text_encoder
    _, drop = template(pipe)
    rows = []
    for input_ids, mask in zip(ids["input_ids"], ids["attention_mask"].bool(), strict=True):
        # One prompt at a time without padding, as the pipeline and the recipe encode them: bit for bit the same.
        real = input_ids[mask].unsqueeze(0).to(encoder.device)
        hidden = encoder(input_ids=real, attention_mask=torch.ones_like(real), output_hidden_states=True)
        rows.append(hidden.hidden_states[-1][0, drop:][:MAX_SEQUENCE_LENGTH])
    length = max(r.shape[0] for r in rows)
    embeds = torch.stack([torch.cat([r, r.new_zeros(length - r.shape[0], r.shape[1])]) for r in rows])
    masks = torch.stack([torch.arange(length, device=embeds.device) < r.shape[0] for r in rows]).long()
    return {"encoder_hidden_states": embeds, "encoder_hidden_states_mask": masks}


def count_tokens(pipe, text: str) -> tuple[int, int]:
    """(tokens of the prompt, how many of them the model reads): 512 less the template's tokens after the drop."""
    template_text, drop = template(pipe)
    tok = pipe.tokenizer
    overhead = len(tok(template_text.format(""), add_special_tokens=False).input_ids) - drop
    return qwen_chat.count_tokens(tok, text, overhead, MAX_SEQUENCE_LENGTH)


def normalised_latents(vae_config, latents):
    """Unscaled VAE latents [B, C, h, w] → the transformer's space: (z - latents_mean) / latents_std per channel."""
    import torch

    mean = torch.tensor(vae_config.latents_mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(vae_config.latents_std, dtype=torch.float32).view(1, -1, 1, 1)
    return (latents.float() - mean.to(latents.device)) / std.to(latents.device)


def noise(objective, pipe, batch):
    """The step's noisy latents x_t = (1 - σ) x_0 + σ ε and its target ε - x_0, weighted per row (Noised)."""

    device = objective.runtime.device
    x0 = normalised_latents(pipe.vae.config, batch.latents.to(device))
    noise = batch.noise.to(device).float()
    return objective.flow_noised(x0, noise, batch.timesteps)


def predict(objective, pipe, noised, embeds, rows: slice = slice(None)):
    """The transformer's prediction for `rows` of the batch, unpacked to the latents' [B, C, h, w]."""
    from diffusers import QwenImagePipeline

    from engine.base_model import autocast

    device = objective.runtime.device
    transformer = pipe.transformer
    dtype = transformer.dtype
    noisy = noised.model_input[rows]
    b, c, h, w = noisy.shape
    packed = QwenImagePipeline._pack_latents(noisy, b, c, h, w)
    mask = embeds["encoder_hidden_states_mask"][rows]
    mask = None if bool(mask.all()) else mask.to(device)  # encode_prompt's None when no position is padding
    with autocast(objective.runtime):
        prediction = transformer(
            hidden_states=packed.to(dtype),
            timestep=(noised.timesteps[rows] / 1000).to(dtype),
            encoder_hidden_states=embeds["encoder_hidden_states"][rows].to(device, dtype),
            encoder_hidden_states_mask=mask,
            img_shapes=[[(1, h // 2, w // 2)]] * b,
            return_dict=False,
        )[0]
    factor = pipe.vae_scale_factor
    return QwenImagePipeline._unpack_latents(prediction, h * factor, w * factor, factor).squeeze(2)


def noise_shape(pipe, width: int, height: int) -> tuple[int, ...]:
    """QwenImagePipeline.prepare_latents' noise for one picture, frame dimension left out: [C, h, w], sides even."""
    factor = pipe.vae_scale_factor * 2
    return (pipe.transformer.config.in_channels // 4, 2 * (height // factor), 2 * (width // factor))


def pack_noise(latents):
    """Starting noise [B, C, h, w] → the packed tokens the pipeline takes as `latents` (its own layout)."""
    from diffusers import QwenImagePipeline

    b, c, h, w = latents.shape
    return QwenImagePipeline._pack_latents(latents, b, c, h, w)


def pipeline_arguments(guidance: float, negative: list[str] | None, count: int) -> dict[str, Any]:
    """The pipeline's CFG arguments: true CFG at `guidance` against the negative prompts (" " when none)."""
    return {"true_cfg_scale": guidance, "max_sequence_length": MAX_SEQUENCE_LENGTH,
            "negative_prompt": list(negative) if negative else [NEGATIVE_PROMPT] * count}
