"""The LoRA in the key layout A1111, ComfyUI, Forge and kohya's sd-scripts read, with sd-scripts' `ss_*` metadata.

  SD1.x/SD2.x  `lora_unet_down_blocks_0_attentions_0_…` (sd-scripts trains SD1/SD2 on diffusers' UNet and names
               modules after it) and `lora_te_text_model_encoder_layers_…`;
  SDXL         `lora_unet_input_blocks_4_1_…` / `middle_block_1` / `output_blocks_…` (sd-scripts trains SDXL on the
               original sgm UNet) and `lora_te1_…` / `lora_te2_…` for its two text encoders;
  FLUX.1       `lora_transformer_<diffusers module path>` (OneTrainer's layout): ComfyUI's Flux LoRA key map reads it
               (comfy/lora.py, "lora_transformer_{…} #onetrainer", slicing q/k/v into the fused BFL weights) and so
               does diffusers (_convert_kohya_flux_lora_to_diffusers → its "mixture" branch) at any model width.
               sd-scripts' own FLUX layout fuses q/k/v into `double_blocks_N_img_attn_qkv` / `single_blocks_N_linear1`,
               and diffusers reads the single blocks of that layout with FLUX.1's 3072/12288 widths hard-coded,
               so it could not be proven on a small model; this one can;
  FLUX.2       `diffusion_model.double_blocks.N.img_attn.qkv` / `single_blocks.N.linear1` (BFL's names, ai-toolkit's
               layout) with q/k/v fused exactly (engine.flux2.bfl_state);
  Z-Image      `diffusion_model.<diffusers module>` (its diffusers names are the original checkpoint's; engine.z_image);
  Qwen-Image   the same layout (ComfyUI's Qwen-Image modules carry the diffusers names: comfy/lora.py maps
               `diffusion_model.transformer_blocks.N.attn.to_q` to them, and diffusers' Qwen LoRA converter strips
               the prefix).
Each LoRA module becomes `<name>.lora_down.weight` (PEFT's lora_A), `<name>.lora_up.weight` (lora_B) and `<name>.alpha`.
"""

from __future__ import annotations

import re
from typing import Any

from engine.families import Family


def sgm_module_name(name: str, layers_per_block: int) -> str:
    """A diffusers UNet module path → the original (sgm/LDM) one, for the attention modules LoRA trains."""
    per = layers_per_block + 1
    if m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", name):
        return f"input_blocks.{int(m[1]) * per + int(m[2]) + 1}.1.{m[3]}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", name):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", name):
        return f"output_blocks.{int(m[1]) * per + int(m[2])}.1.{m[3]}"
    raise ValueError(f"no original-layout name for UNet module {name}")


def kohya_state(peft_state: dict[str, Any], name_of, alpha: float) -> dict[str, Any]:
    """PEFT names (`….to_q.lora_A.weight`) → `<name_of(module)>.lora_down.weight`, `.lora_up.weight`, `.alpha`."""
    import torch

    out: dict[str, Any] = {}
    for key, tensor in peft_state.items():
        module, _, kind = key.partition(".lora_")
        name = name_of(module)
        if kind.startswith("A."):
            out[f"{name}.lora_down.weight"] = tensor
        elif kind.startswith("B."):
            out[f"{name}.lora_up.weight"] = tensor
        else:
            continue
        out[f"{name}.alpha"] = torch.tensor(float(alpha))
    return out


def _underscored(prefix: str):
    return lambda module: f"{prefix}_{module.replace('.', '_')}"


def text_encoder_module(module: str) -> str:
    # transformers 5 dropped CLIPTextModel's `text_model.` level; kohya names still carry it.
    return module if module.startswith("text_model.") else f"text_model.{module}"


def kohya_layout(family: Family, denoiser_state: dict[str, Any], denoiser_alpha: float, denoiser_config,
                 text_encoder_states: list[tuple[dict[str, Any], float]]) -> dict[str, Any]:
    """The whole kohya/ComfyUI state for a family from the PEFT states of its trained modules."""
    if family.kohya_unet_names == "bfl-flux2":
        from engine.flux2 import bfl_state

        rank = next(v.shape[0] for k, v in denoiser_state.items() if ".lora_A." in k)
        return bfl_state(denoiser_state, denoiser_alpha / rank)
    if family.kohya_unet_names == "diffusers-prefixed":
        from engine.z_image import comfy_state

        rank = next(v.shape[0] for k, v in denoiser_state.items() if ".lora_A." in k)
        return comfy_state(denoiser_state, denoiser_alpha / rank)
    if family.kohya_unet_names == "onetrainer":
        state = kohya_state(denoiser_state, _underscored("lora_transformer"), denoiser_alpha)
    elif family.kohya_unet_names == "sgm":
        lpb = int(denoiser_config.layers_per_block)
        state = kohya_state(denoiser_state, lambda m: "lora_unet_" + sgm_module_name(m, lpb).replace(".", "_"),
                            denoiser_alpha)
    else:
        state = kohya_state(denoiser_state, _underscored("lora_unet"), denoiser_alpha)
    for prefix, (te_state, te_alpha) in zip(family.kohya_text_encoder_prefixes, text_encoder_states, strict=False):
        renamed = {f"{text_encoder_module(k.partition('.lora_')[0])}.lora_{k.partition('.lora_')[2]}": v
                   for k, v in te_state.items()}
        state.update(kohya_state(renamed, _underscored(prefix), te_alpha))
    return state


def kohya_metadata(family: Family, rank: int, alpha: float, resolution: int, title: str = "Kabina LoRA") -> dict[str, str]:
    """sd-scripts' training metadata (what A1111 and Civitai read) plus the SAI model-spec keys."""
    metadata = {
        # A1111's Lora extension (network.NetworkOnDisk.detect_version) reads the version from these two.
        "ss_base_model_version": family.ss_base_model_version,
        "ss_v2": str(family.ss_v2),
        "ss_v_parameterization": str(family.ss_v_parameterization),
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(alpha),
        "ss_resolution": f"({resolution}, {resolution})",
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": f"{family.modelspec_architecture}/lora",
        "modelspec.implementation": family.modelspec_implementation,
        "modelspec.title": title,
        "modelspec.resolution": f"{resolution}x{resolution}",
    }
    if family.kohya_unet_names not in ("onetrainer", "bfl-flux2", "diffusers-prefixed"):
        # Not for FLUX: "networks.lora_flux" would announce sd-scripts' own fused FLUX layout, which this is not.
        metadata["ss_network_module"] = "networks.lora"
        metadata["modelspec.prediction_type"] = "v" if family.ss_v_parameterization else "epsilon"
    return metadata
