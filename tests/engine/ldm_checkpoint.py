"""Writes a diffusers pipeline as one original-layout (LDM / A1111) `.safetensors` file, for the single-file tests.

The layout is what Stable Diffusion 1.x checkpoints use: `model.diffusion_model.*` (UNet),
`first_stage_model.*` (VAE) and `cond_stage_model.transformer.*` (CLIP text encoder).
"""

from __future__ import annotations

import re
from pathlib import Path

_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
                "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
_VAE_TOP = {"conv_norm_out": "norm_out"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{_UNET_RESNET.get(head, head)}.{tail}"


def unet_key(key: str, layers_per_block: int, blocks_with_attention: set[int]) -> str:
    per = layers_per_block + 1
    for ours, theirs in _UNET_TOP.items():
        if key.startswith(ours + "."):
            return theirs + key[len(ours):]
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = block * per + layer + 1
        return f"input_blocks.{index}.0.{_resnet(rest)}" if kind == "resnets" else f"input_blocks.{index}.1.{rest}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{int(m[1]) * per + layers_per_block + 1}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
        return f"middle_block.{0 if m[1] == '0' else 2}.{_resnet(m[2])}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = block * per + layer
        return f"output_blocks.{index}.0.{_resnet(rest)}" if kind == "resnets" else f"output_blocks.{index}.1.{rest}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        block = int(m[1])
        slot = 2 if block in blocks_with_attention else 1
        return f"output_blocks.{block * per + layers_per_block}.{slot}.conv.{m[2]}"
    raise KeyError(key)


def vae_key(key: str, up_blocks: int) -> str:
    side, _, rest = key.partition(".")
    if side not in ("encoder", "decoder"):
        return key  # quant_conv, post_quant_conv
    for ours, theirs in _VAE_TOP.items():
        if rest.startswith(ours + "."):
            return f"{side}.{theirs}{rest[len(ours):]}"
    rest = rest.replace("conv_shortcut", "nin_shortcut")
    if m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", rest):
        return f"{side}.down.{m[1]}.block.{m[2]}.{m[3]}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", rest):
        return f"{side}.down.{m[1]}.downsample.conv.{m[2]}"
    if m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", rest):
        return f"{side}.up.{up_blocks - 1 - int(m[1])}.block.{m[2]}.{m[3]}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", rest):
        return f"{side}.up.{up_blocks - 1 - int(m[1])}.upsample.conv.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", rest):
        return f"{side}.mid.block_{int(m[1]) + 1}.{m[2]}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", rest):
        inner = m[1]
        for ours, theirs in _VAE_ATTENTION.items():
            if inner.startswith(ours + "."):
                return f"{side}.mid.attn_1.{theirs}{inner[len(ours):]}"
    return f"{side}.{rest}"


def write_ldm_checkpoint(pipe, target: Path) -> Path:
    from safetensors.torch import save_file

    unet_config = pipe.unet.config
    with_attention = {i for i, kind in enumerate(unet_config.up_block_types) if "CrossAttn" in kind}
    state = {}
    for key, value in pipe.unet.state_dict().items():
        state["model.diffusion_model." + unet_key(key, unet_config.layers_per_block, with_attention)] = value
    for key, value in pipe.vae.state_dict().items():
        if "mid_block.attentions" in key and value.ndim == 2:
            value = value[:, :, None, None]  # LDM's VAE attention uses 1x1 convolutions
        state["first_stage_model." + vae_key(key, len(pipe.vae.config.up_block_types))] = value
    for key, value in pipe.text_encoder.state_dict().items():
        state["cond_stage_model.transformer.text_model." + key] = value  # transformers 5 drops `text_model.`
    save_file({k: v.contiguous() for k, v in state.items()}, str(target))
    return target
