"""FLUX.2 [klein]: its text conditioning, its training step and its LoRA under ComfyUI's names.

Everything here follows Flux2KleinPipeline (diffusers 0.42) and train_dreambooth_lora_flux2_klein.py:
  - text: the prompt in Qwen3's chat template (a user turn, then an assistant turn with an empty think block),
    padded to 512 tokens; hidden states of layers 9, 18 and 27 side by side (3 × the encoder's width) are the
    sequence; text position ids are (0, 0, 0, l) per token (_prepare_text_ids);
  - latents: the VAE posterior, patchified 2x2 into 4× the channels, normalised by the VAE's batch-norm
    statistics (not by scaling/shift factors as FLUX.1), then flattened to tokens with (0, h, w, 0) position ids;
  - the step: x_t = (1 - σ) x_0 + σ ε at the recipe's timestep density, target ε - x_0, no guidance embedding;
    noise and prediction apart (noise, predict), so output preservation (the class row held to the frozen model's
    own prediction) serves it as it serves FLUX.1;
  - the ComfyUI copy: BFL's module names (`diffusion_model.double_blocks.N.img_attn.qkv`, `single_blocks.N.linear1`)
    with q/k/v fused exactly (lora_A stacked, lora_B block-diagonal), the layout ai-toolkit writes and both ComfyUI
    and diffusers (_convert_non_diffusers_flux2_lora_to_diffusers) read.
"""

from __future__ import annotations

import re
from typing import Any

from engine import qwen_chat

HIDDEN_LAYERS = (9, 18, 27)  # Flux2KleinPipeline's text_encoder_out_layers
MAX_SEQUENCE_LENGTH = qwen_chat.MAX_SEQUENCE_LENGTH  # Flux2KleinPipeline's (and the recipe's) max_sequence_length


def tokenize(pipe, prompts: list[str]) -> dict[str, Any]:
    return qwen_chat.tokenize(pipe.tokenizer, prompts, thinking=False)


def encode(pipe, ids: dict[str, Any]) -> dict[str, Any]:
    """The conditioning tensors: `encoder_hidden_states` [B, L, 3·D] and `text_ids` [B, L, 4]."""
    import torch
    from diffusers import Flux2KleinPipeline

    encoder = pipe.text_encoder
    out = encoder(input_ids=ids["input_ids"].to(encoder.device),
                  attention_mask=ids["attention_mask"].to(encoder.device), output_hidden_states=True, use_cache=False)
    stacked = torch.stack([out.hidden_states[k] for k in HIDDEN_LAYERS], dim=1)
    batch, layers, length, width = stacked.shape
    embeds = stacked.permute(0, 2, 1, 3).reshape(batch, length, layers * width)
    text_ids = Flux2KleinPipeline._prepare_text_ids(embeds).to(embeds.device)
    return {"encoder_hidden_states": embeds, "text_ids": text_ids}


def count_tokens(pipe, text: str) -> tuple[int, int]:
    """(tokens of the prompt, how many of them fit): the chat template's own tokens come off the 512."""
    return qwen_chat.count_tokens(pipe.tokenizer, text, qwen_chat.template_tokens(pipe.tokenizer, thinking=False))


def normalised_latents(vae, latents):
    """Unscaled VAE latents [B, C, h, w] → the transformer's space: patchified 2x2, then batch-norm normalised."""
    import torch
    from diffusers import Flux2KleinPipeline

    patches = Flux2KleinPipeline._patchify_latents(latents)
    mean = vae.bn.running_mean.view(1, -1, 1, 1).to(patches.device, torch.float32)
    std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).to(patches.device,
                                                                                          torch.float32)
    return (patches.float() - mean) / std


def noise(objective, pipe, batch):
    """The step's noisy latents x_t = (1 - σ) x_0 + σ ε in the patchified, BN-normalised space, and its target
    ε - x_0, weighted per row (Noised)."""
    from diffusers import Flux2KleinPipeline

    device = objective.runtime.device
    x0 = normalised_latents(pipe.vae, batch.latents.to(device))
    noise = Flux2KleinPipeline._patchify_latents(batch.noise.to(device)).float()
    return objective.flow_noised(x0, noise, batch.timesteps)


def predict(objective, pipe, noised, embeds, rows: slice = slice(None)):
    """The transformer's prediction for `rows` of the batch, unpacked to the patchified latents' [B, 4·C, h, w]."""
    import torch
    from diffusers import Flux2KleinPipeline

    from engine.base_model import autocast

    device = objective.runtime.device
    transformer = pipe.transformer
    dtype = transformer.dtype
    noisy = noised.model_input[rows]
    packed = Flux2KleinPipeline._pack_latents(noisy)
    image_ids = Flux2KleinPipeline._prepare_latent_ids(noisy).to(device)
    guidance = None
    if transformer.config.guidance_embeds:
        guidance = torch.full((noisy.shape[0],), float(objective.family.train_guidance or 1.0), device=device)
    with autocast(objective.runtime):
        prediction = transformer(
            hidden_states=packed.to(dtype),
            timestep=(noised.timesteps[rows] / 1000).to(dtype),
            guidance=guidance,
            encoder_hidden_states=embeds["encoder_hidden_states"][rows].to(device, dtype),
            txt_ids=embeds["text_ids"][rows].to(device),
            img_ids=image_ids,
            return_dict=False,
        )[0]
    return Flux2KleinPipeline._unpack_latents_with_ids(prediction[:, : packed.size(1)], image_ids)


def noise_shape(pipe, width: int, height: int) -> tuple[int, ...]:
    """The pipeline's starting-noise shape for one picture: patchified latents [4·C, h/2, w/2]."""
    factor = pipe.vae_scale_factor * 2
    return (pipe.transformer.config.in_channels, height // factor, width // factor)


# --- the ComfyUI / BFL copy ----------------------------------------------------------------------------------------

# diffusers module → BFL module, per block kind (the inverse of _convert_non_diffusers_flux2_lora_to_diffusers).
_DOUBLE_FUSED = {("to_q", "to_k", "to_v"): "img_attn.qkv", ("add_q_proj", "add_k_proj", "add_v_proj"): "txt_attn.qkv"}
_DOUBLE_PLAIN = {"attn.to_out.0": "img_attn.proj", "attn.to_add_out": "txt_attn.proj", "ff.linear_in": "img_mlp.0",
                 "ff.linear_out": "img_mlp.2", "ff_context.linear_in": "txt_mlp.0",
                 "ff_context.linear_out": "txt_mlp.2"}
_SINGLE_PLAIN = {"attn.to_qkv_mlp_proj": "linear1", "attn.to_out": "linear2"}


def bfl_state(peft_state: dict[str, Any], scale: float) -> dict[str, Any]:
    """PEFT's transformer LoRA (`….to_q.lora_A.weight`) → `diffusion_model.<BFL name>.lora_A/lora_B.weight`.

    `scale` (alpha / rank) is folded into lora_B: the file carries no alpha, which ComfyUI and diffusers both read
    as a scale of 1. Fused q/k/v get A = [A_q; A_k; A_v] and B = diag(B_q, B_k, B_v), so B·A is exactly the three
    updates stacked (the rank triples; nothing is approximated).
    """
    import torch

    modules: dict[str, dict[str, Any]] = {}
    for key, tensor in peft_state.items():
        module, _, kind = key.partition(".lora_")
        modules.setdefault(module, {})[kind[0]] = tensor
    out: dict[str, Any] = {}

    def put(name: str, a, b) -> None:
        out[f"diffusion_model.{name}.lora_A.weight"] = a.contiguous()
        out[f"diffusion_model.{name}.lora_B.weight"] = (b * scale).contiguous()

    done: set[str] = set()
    for module in sorted(modules):
        if m := re.fullmatch(r"transformer_blocks\.(\d+)\.attn\.(to_q|add_q_proj)", module):
            block, first = m[1], m[2]
            for parts, bfl in _DOUBLE_FUSED.items():
                if parts[0] != first:
                    continue
                names = [f"transformer_blocks.{block}.attn.{p}" for p in parts]
                if not all(n in modules for n in names):
                    raise ValueError(f"cannot fuse {parts} of block {block}: LoRA on only some of them")
                put(f"double_blocks.{block}.{bfl}", torch.cat([modules[n]["A"] for n in names]),
                    torch.block_diag(*[modules[n]["B"] for n in names]))
                done.update(names)
    for module, pair in modules.items():
        if module in done:
            continue
        if m := re.fullmatch(r"transformer_blocks\.(\d+)\.(.+)", module):
            name = f"double_blocks.{m[1]}.{_DOUBLE_PLAIN.get(m[2], '')}"
            known = m[2] in _DOUBLE_PLAIN
        elif m := re.fullmatch(r"single_transformer_blocks\.(\d+)\.(.+)", module):
            name = f"single_blocks.{m[1]}.{_SINGLE_PLAIN.get(m[2], '')}"
            known = m[2] in _SINGLE_PLAIN
        else:
            known = False
        if not known:
            raise ValueError(f"no BFL name for the FLUX.2 module {module}")
        put(name, pair["A"], pair["B"])
    return out
