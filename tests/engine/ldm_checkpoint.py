"""Writes a diffusers pipeline as one original-layout (LDM / A1111) `.safetensors` file, for the single-file tests.

The layouts are what the original checkpoints use: `model.diffusion_model.*` (UNet, SDXL's with `label_emb.*`),
`first_stage_model.*` (VAE), and the text encoders: `cond_stage_model.transformer.*` (SD1.x, CLIP in transformers'
layout), `cond_stage_model.model.*` (SD2.x, OpenCLIP's layout: fused q/k/v `in_proj`, `resblocks`, `ln_final`),
`conditioner.embedders.0.transformer.*` + `conditioner.embedders.1.model.*` (SDXL: CLIP-L, then OpenCLIP bigG).
SAI model-spec metadata (architecture, resolution, prediction type) is written the way sd-scripts writes it.
"""

from __future__ import annotations

import re
from pathlib import Path

_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
                "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}
_OPENCLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
                   "self_attn.out_proj": "attn.out_proj"}
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


def clip_state(text_encoder, prefix: str) -> dict:
    """transformers' CLIP layout under `prefix`, with the `text_model.` level transformers 5 drops."""
    out = {}
    for key, value in text_encoder.state_dict().items():
        key = key.removeprefix("text_model.")
        if key.startswith("text_projection"):
            continue
        out[f"{prefix}text_model.{key}"] = value
    return out


def openclip_state(text_encoder, prefix: str) -> dict:
    """OpenCLIP's layout: token_embedding, positional_embedding, resblocks with a fused in_proj, ln_final."""
    import torch

    state = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    out = {
        prefix + "token_embedding.weight": state["embeddings.token_embedding.weight"],
        prefix + "positional_embedding": state["embeddings.position_embedding.weight"],
        prefix + "ln_final.weight": state["final_layer_norm.weight"],
        prefix + "ln_final.bias": state["final_layer_norm.bias"],
    }
    hidden = state["embeddings.token_embedding.weight"].shape[1]
    # OpenCLIP multiplies by text_projection (width x embed); transformers stores its transpose as a Linear.
    projection = state.get("text_projection.weight")
    out[prefix + "text_projection"] = torch.eye(hidden) if projection is None else projection.T.contiguous()
    layers = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.layers.")})
    for i in layers:
        src, dst = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(
                [state[f"{src}self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")]
            )
            for ours, theirs in _OPENCLIP_LAYER.items():
                out[f"{dst}{theirs}.{kind}"] = state[f"{src}{ours}.{kind}"]
    return out


def write_ldm_checkpoint(pipe, target: Path, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    from engine.detection import family_of

    family = family_of(pipe)
    unet_config = pipe.unet.config
    with_attention = {i for i, kind in enumerate(unet_config.up_block_types) if "CrossAttn" in kind}
    state = {}
    for key, value in pipe.unet.state_dict().items():
        state["model.diffusion_model." + unet_key(key, unet_config.layers_per_block, with_attention)] = value
    for key, value in pipe.vae.state_dict().items():
        if "mid_block.attentions" in key and value.ndim == 2:
            value = value[:, :, None, None]  # LDM's VAE attention uses 1x1 convolutions
        state["first_stage_model." + vae_key(key, len(pipe.vae.config.up_block_types))] = value
    if family.name == "sd1":
        state.update(clip_state(pipe.text_encoder, "cond_stage_model.transformer."))
    elif family.name in ("sd2", "sd2-v"):
        state.update(openclip_state(pipe.text_encoder, "cond_stage_model.model."))
    elif family.name == "sdxl":
        state.update(clip_state(pipe.text_encoder, "conditioner.embedders.0.transformer."))
        state.update(openclip_state(pipe.text_encoder_2, "conditioner.embedders.1.model."))
    else:
        raise ValueError(f"no original layout written for {family.name}")
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    spec = {
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": family.modelspec_architecture,
        "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
        "modelspec.title": "kabina tiny test model",
        "modelspec.resolution": f"{size}x{size}",
        "modelspec.prediction_type": "v" if pipe.scheduler.config.prediction_type == "v_prediction" else "epsilon",
    }
    spec.update(metadata or {})
    save_file({k: v.contiguous() for k, v in state.items()}, str(target), metadata=spec)
    return target
