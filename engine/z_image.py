"""Z-Image (and Z-Image-Turbo): its text conditioning, its training step and the copy of its LoRA for other tools.

Everything here follows ZImagePipeline (diffusers 0.42) and train_dreambooth_lora_z_image.py:
  - text: the prompt in Qwen3's chat template with thinking on (the pipeline's enable_thinking=True), padded to
    512 tokens; the encoder's second-to-last hidden state, cut to the prompt's real tokens (a list of tensors of
    different lengths, one per prompt: the transformer takes lists);
  - latents: (z - shift_factor) · scaling_factor as FLUX.1's VAE, one frame each ([C, 1, h, w]), not packed;
  - the step: x_t = (1 - σ) x_0 + σ ε at the recipe's timestep density; the transformer is given (1000 - t) / 1000
    and its output is negated (Z-Image predicts x_0 - ε); target ε - x_0; noise and prediction apart (noise,
    predict), so output preservation (the class row held to the frozen model's own prediction) serves it;
  - the copy for other tools: `diffusion_model.<diffusers module>.lora_A/lora_B` (Z-Image's diffusers module names
    are the original checkpoint's), read by diffusers' _convert_non_diffusers_z_image_lora_to_diffusers.
"""

from __future__ import annotations

from typing import Any

from engine import qwen_chat

MAX_SEQUENCE_LENGTH = qwen_chat.MAX_SEQUENCE_LENGTH  # ZImagePipeline's max_sequence_length


def tokenize(pipe, prompts: list[str]) -> dict[str, Any]:
    return qwen_chat.tokenize(pipe.tokenizer, prompts, thinking=True)


def encode(pipe, ids: dict[str, Any]) -> dict[str, Any]:
    """`cap_feats`: one [tokens, D] tensor per prompt, its padding left out (ZImagePipeline._encode_prompt)."""
    encoder = pipe.text_encoder
    masks = ids["attention_mask"].to(encoder.device).bool()
    hidden = encoder(input_ids=ids["input_ids"].to(encoder.device), attention_mask=masks,
                     output_hidden_states=True).hidden_states[-2]
    return {"cap_feats": [hidden[i][masks[i]] for i in range(hidden.shape[0])]}


def count_tokens(pipe, text: str) -> tuple[int, int]:
    return qwen_chat.count_tokens(pipe.tokenizer, text, qwen_chat.template_tokens(pipe.tokenizer, thinking=True))


def noise(objective, pipe, batch):
    """The step's noisy latents x_t = (1 - σ) x_0 + σ ε on (z - shift) · scale and its target ε - x_0, weighted per
    row (Noised)."""

    device = objective.runtime.device
    vae = pipe.vae.config
    x0 = ((batch.latents - (vae.shift_factor or 0.0)) * vae.scaling_factor).to(device)
    noise = batch.noise.to(device)
    return objective.flow_noised(x0, noise, batch.timesteps)


def predict(objective, pipe, noised, embeds, rows: slice = slice(None)):
    """The transformer's prediction for `rows` of the batch, negated into ε - x_0's space ([B, C, h, w])."""
    import torch

    from engine.base_model import autocast

    device = objective.runtime.device
    transformer = pipe.transformer
    dtype = transformer.dtype
    frames = list(noised.model_input[rows].unsqueeze(2).to(dtype).unbind(dim=0))  # [C, 1, h, w] each
    captions = [c.to(device, dtype) for c in embeds["cap_feats"][rows]]  # a list per prompt: slicing keeps it one
    timesteps = noised.timesteps[rows]
    with autocast(objective.runtime):
        out = transformer(frames, ((1000 - timesteps) / 1000).to(dtype), captions, return_dict=False)[0]
    return -torch.stack(out, dim=0).squeeze(2).float()


def noise_shape(pipe, width: int, height: int) -> tuple[int, ...]:
    """ZImagePipeline.prepare_latents' shape for one picture: [C, h, w], sides even."""
    factor = pipe.vae_scale_factor * 2
    return (pipe.transformer.config.in_channels, 2 * (height // factor), 2 * (width // factor))


def comfy_state(peft_state: dict[str, Any], scale: float) -> dict[str, Any]:
    """PEFT names → `diffusion_model.<module>.lora_A/lora_B.weight`, alpha / rank folded into lora_B.

    ComfyUI reads these diffusers names for Z-Image (comfy/lora.py's Lumina2 branch over comfy/utils.py's
    z_image_to_diffusers) and patches its fused attention.qkv slice by slice; tests/engine/test_z_image.py checks it.
    """
    out: dict[str, Any] = {}
    for key, tensor in peft_state.items():
        module, _, kind = key.partition(".lora_")
        if kind.startswith("A."):
            out[f"diffusion_model.{module}.lora_A.weight"] = tensor.contiguous()
        elif kind.startswith("B."):
            out[f"diffusion_model.{module}.lora_B.weight"] = (tensor * scale).contiguous()
    return out
