"""FLUX.1 as BFL's single transformer file plus a diffusers folder of the other components, loaded offline.

BFL's `flux1-dev.safetensors` / `flux1-schnell.safetensors` hold the transformer only, in BFL's own names
(`double_blocks.N.img_attn.qkv`, `single_blocks.N.linear1`, `final_layer.adaLN_modulation.1`, …). The text
encoders, tokenizers, VAE and scheduler come from a diffusers FLUX.1 folder named like the file beside it
(`flux1-dev.safetensors` + `flux1-dev/`), whose transformer/ may be absent or hold only config.json.

The transformer's config is the folder's transformer/config.json, else our template (engine/configs/flux-dev or
flux-schnell), with every shape taken from the file: depth, width, heads, context and pooled widths, guidance.
The rotary axes are not recorded in any tensor: FLUX.1's (16, 56, 56) for its 128-wide heads; for narrower heads
(the tiny test models) a quarter of the head for the index axis and the rest split evenly between height and width.

BFL → diffusers is our own conversion, at any width: diffusers' converter fixes the width at FLUX.1's 3072, which
the tiny models are not (tests check ours gives exactly what diffusers' gives at 3072). The converted weights then go
through `FluxTransformer2DModel.from_single_file(state, config=…, local_files_only=True)`, which needs nothing
from the network once it has a config folder; without one it would fetch BFL's repository's config.
The reverse (diffusers → BFL) writes the tiny single-file fixtures (`python -m engine tiny-model … --single-file`).
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from engine.detection import Detection, TensorIndex, flux_components, read_safetensors_index
from engine.model_files import CONFIGS_DIR, BaseModelError, read_json
from engine.single_file import TEMPLATES

COMFY_PREFIX = "model.diffusion_model."  # how ComfyUI saves a FLUX.1 transformer; BFL's own files have none
WEIGHT_SUFFIXES = (".safetensors", ".bin")

# BFL module → diffusers module, for the tensors that keep their shape (.weight and .bias alike).
_TOP = {
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "txt_in": "context_embedder",
    "img_in": "x_embedder",
    "final_layer.linear": "proj_out",
}
_DOUBLE = {
    "img_mod.lin": "norm1.linear", "txt_mod.lin": "norm1_context.linear",
    "img_attn.proj": "attn.to_out.0", "txt_attn.proj": "attn.to_add_out",
    "img_mlp.0": "ff.net.0.proj", "img_mlp.2": "ff.net.2",
    "txt_mlp.0": "ff_context.net.0.proj", "txt_mlp.2": "ff_context.net.2",
}
_SINGLE = {"modulation.lin": "norm.linear", "linear2": "proj_out"}
# RMSNorm scales: BFL calls the parameter `scale`, diffusers `weight`.
_DOUBLE_NORMS = {
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight", "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
}
_SINGLE_NORMS = {"norm.query_norm.scale": "attn.norm_q.weight", "norm.key_norm.scale": "attn.norm_k.weight"}
# Fused in BFL's layout, stacked along the output rows in this order.
_DOUBLE_FUSED = {"img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
                 "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")}
_SINGLE_FUSED = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")  # linear1: q, k, v, then the MLP's input
_FINAL_NORM = ("final_layer.adaLN_modulation.1", "norm_out.linear")  # BFL (shift, scale) = diffusers (scale, shift)


def _swap_halves(tensor):
    import torch

    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _plain(table: dict[str, str], rest: str) -> str | None:
    module, _, param = rest.rpartition(".")
    return f"{table[module]}.{param}" if module in table and param in ("weight", "bias") else None


def diffusers_state_from_bfl(state: dict[str, Any]) -> dict[str, Any]:
    """BFL's (or ComfyUI's `model.diffusion_model.`-prefixed) FLUX.1 transformer tensors under diffusers' names."""
    out: dict[str, Any] = {}
    for key, tensor in state.items():
        name = key.removeprefix(COMFY_PREFIX)
        if m := re.fullmatch(r"double_blocks\.(\d+)\.(.+)", name):
            block, rest = f"transformer_blocks.{m[1]}.", m[2]
            module, _, param = rest.rpartition(".")
            if module in _DOUBLE_FUSED:
                for part, piece in zip(_DOUBLE_FUSED[module], tensor.chunk(3, dim=0), strict=True):
                    out[f"{block}{part}.{param}"] = piece.contiguous()
                continue
            target = _plain(_DOUBLE, rest) or _DOUBLE_NORMS.get(rest)
        elif m := re.fullmatch(r"single_blocks\.(\d+)\.(.+)", name):
            block, rest = f"single_transformer_blocks.{m[1]}.", m[2]
            module, _, param = rest.rpartition(".")
            if module == "linear1":
                width = state[f"{key.rpartition('single_blocks.')[0]}single_blocks.{m[1]}.linear2.weight"].shape[0]
                sizes = (width, width, width, tensor.shape[0] - 3 * width)
                for part, piece in zip(_SINGLE_FUSED, tensor.split(sizes, dim=0), strict=True):
                    out[f"{block}{part}.{param}"] = piece.contiguous()
                continue
            target = _plain(_SINGLE, rest) or _SINGLE_NORMS.get(rest)
        else:
            block, rest = "", name
            module, _, param = rest.rpartition(".")
            if module == _FINAL_NORM[0]:
                out[f"{_FINAL_NORM[1]}.{param}"] = _swap_halves(tensor)
                continue
            target = _plain(_TOP, rest)
        if target is None:
            raise BaseModelError(f"the FLUX.1 single file has a tensor {key} that BFL's FLUX.1 transformer does not "
                                 "have (a LoRA, a quantised or another model's file?)")
        out[block + target] = tensor
    return out


def bfl_state_from_diffusers(state: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A diffusers FluxTransformer2DModel state dict under BFL's names (the inverse of diffusers_state_from_bfl)."""
    import torch

    reverse = {
        "": {v: k for k, v in _TOP.items()},
        "transformer_blocks": {v: k for k, v in _DOUBLE.items()},
        "single_transformer_blocks": {v: k for k, v in _SINGLE.items()},
    }
    norms = {"transformer_blocks": {v: k for k, v in _DOUBLE_NORMS.items()},
             "single_transformer_blocks": {v: k for k, v in _SINGLE_NORMS.items()}}
    bfl_block = {"transformer_blocks": "double_blocks", "single_transformer_blocks": "single_blocks"}
    out: dict[str, Any] = {}
    for key, tensor in state.items():
        if m := re.fullmatch(r"(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)", key):
            kind, index, rest = m[1], m[2], m[3]
            block = f"{bfl_block[kind]}.{index}."
        else:
            kind, index, rest, block = "", "", key, ""
        module, _, param = rest.rpartition(".")
        fused = _DOUBLE_FUSED if kind == "transformer_blocks" else {"linear1": _SINGLE_FUSED} if kind else {}
        group = next((bfl for bfl, parts in fused.items() if module in parts), None)
        if group is not None:
            if module == fused[group][0]:  # written once, when its first part comes by
                pieces = [state[f"{kind}.{index}.{part}.{param}"] for part in fused[group]]
                out[f"{prefix}{block}{group}.{param}"] = torch.cat(pieces, dim=0).contiguous()
            continue
        if kind == "" and module == _FINAL_NORM[1]:
            out[f"{prefix}{_FINAL_NORM[0]}.{param}"] = _swap_halves(tensor).contiguous()
            continue
        target = _plain(reverse[kind], rest) or norms.get(kind, {}).get(rest)
        if target is None:
            raise ValueError(f"{key} has no place in BFL's FLUX.1 layout")
        out[f"{prefix}{block}{target}"] = tensor.contiguous()
    return out


def write_bfl_checkpoint(transformer, path: Path) -> Path:
    """A FluxTransformer2DModel saved as BFL's single file (what flux1-dev.safetensors is, at this model's size)."""
    from safetensors.torch import save_file

    save_file(bfl_state_from_diffusers(transformer.state_dict()), str(path))
    return path


def split_flux_folder(folder: Path, checkpoint: Path) -> Path:
    """A diffusers FLUX.1 folder → BFL's transformer file + the folder without transformer weights (config stays)."""
    from diffusers import FluxTransformer2DModel

    transformer = FluxTransformer2DModel.from_pretrained(str(folder / "transformer"), local_files_only=True)
    write_bfl_checkpoint(transformer, checkpoint)
    del transformer
    for file in (folder / "transformer").iterdir():
        if file.name != "config.json":
            file.unlink()
    return checkpoint


# --- the transformer's config, fitted to the file ------------------------------------------------------------------


def rope_axes(head_dim: int) -> list[int]:
    if head_dim == 128:
        return [16, 56, 56]  # FLUX.1's own
    index = head_dim // 4
    side = (head_dim - index) // 2
    return [head_dim - 2 * side, side, side]


def fit_transformer(index: TensorIndex, base: dict[str, Any]) -> dict[str, Any]:
    """The diffusers transformer config of the file: `base` (the folder's or our template) with the file's shapes."""
    shapes = {name.removeprefix(COMFY_PREFIX): shape for name, shape in index.shapes.items()}

    def need(name: str) -> tuple[int, ...]:
        if name not in shapes:
            raise BaseModelError(f"the FLUX.1 single file lacks {name}; it is not a complete FLUX.1 transformer")
        return shapes[name]

    def count(kind: str) -> int:
        return len({int(n.split(".")[1]) for n in shapes if n.startswith(kind + ".")})

    width, in_channels = need("img_in.weight")
    head_dim = need("double_blocks.0.img_attn.norm.query_norm.scale")[0]
    config = dict(base)
    config.update(
        in_channels=int(in_channels), num_layers=count("double_blocks"), num_single_layers=count("single_blocks"),
        attention_head_dim=int(head_dim), num_attention_heads=int(width // head_dim),
        joint_attention_dim=int(need("txt_in.weight")[1]),
        pooled_projection_dim=int(need("vector_in.in_layer.weight")[1]),
        guidance_embeds="guidance_in.in_layer.weight" in shapes, patch_size=1,
    )
    out_channels = int(need("final_layer.linear.weight")[0])
    config["out_channels"] = None if out_channels == config["in_channels"] else out_channels
    if sum(config.get("axes_dims_rope") or ()) != head_dim:
        config["axes_dims_rope"] = rope_axes(int(head_dim))
    return config


def transformer_config(checkpoint: Path, detection: Detection) -> dict[str, Any]:
    folder = flux_components(checkpoint, detection.family)
    base = read_json(folder / "transformer" / "config.json")
    if not base:
        base = read_json(CONFIGS_DIR / TEMPLATES[detection.family.name] / "transformer" / "config.json")
    return fit_transformer(read_safetensors_index(checkpoint), base)


def scheduler_config(folder: Path, family_name: str) -> dict[str, Any]:
    """The folder's scheduler, unless it is the other FLUX.1's: dev shifts its sigmas by picture size, schnell not.

    Both FLUX.1s share text encoders and VAE, so one folder serves both files; the sampler must be the file's.
    """
    own = read_json(folder / "scheduler" / "scheduler_config.json")
    template = read_json(CONFIGS_DIR / TEMPLATES[family_name] / "scheduler" / "scheduler_config.json")
    if bool(own.get("use_dynamic_shifting")) != bool(template.get("use_dynamic_shifting")):
        return template
    return own


def key_files(checkpoint: Path, detection: Detection) -> list[tuple[str, Path]]:
    """What the model's content is, for base_model_key: the file and the folder's files it loads (named by place)."""
    folder = flux_components(checkpoint, detection.family)
    files = [("", checkpoint)]
    for file in sorted(folder.rglob("*")):
        name = file.relative_to(folder).as_posix()
        if file.is_file() and not (name.startswith("transformer/") and file.suffix in WEIGHT_SUFFIXES):
            files.append((f"components/{name}", file))
    return files


# --- loading ------------------------------------------------------------------------------------------------------


def load_flux_single_file(pipeline_class, checkpoint: Path, detection: Detection, common: dict[str, Any]):
    """FluxPipeline from BFL's transformer file and the components folder beside it, fully offline."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from safetensors.torch import load_file

    folder = flux_components(checkpoint, detection.family)
    config = transformer_config(checkpoint, detection)
    state = diffusers_state_from_bfl(load_file(str(checkpoint)))
    with tempfile.TemporaryDirectory(prefix="kabina-flux-") as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(config), encoding="utf-8")
        transformer = FluxTransformer2DModel.from_single_file(state, config=tmp, local_files_only=True,
                                                              dtype=common.get("dtype"))
    del state
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler_config(folder, detection.family.name))
    return pipeline_class.from_pretrained(str(folder), transformer=transformer, scheduler=scheduler, **common)

