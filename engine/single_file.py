"""Single-file checkpoints (A1111/Civitai .safetensors) of SD1.x, SD2.x and SDXL, loaded offline with no extra files.

Such a file holds weights only. The diffusers configs come from the family's template under engine/configs/, fitted
to the file's own tensor shapes (what ComfyUI's model detection also does), and the tokenizer is CLIP's real one,
shipped in engine/configs/clip_tokenizer/. What the shapes cannot tell follows the family's convention, or the
file's SAI model-spec metadata (modelspec.resolution, modelspec.prediction_type) when it carries it:
  - attention heads: SD1.x has 8 heads per attention layer; SD2.x and SDXL use 64-wide heads (one head for a
    block narrower than 64); CLIP text encoders use 64-wide heads (8-wide under 64, i.e. the tiny test models);
  - norm groups: 32 (a narrower UNet uses half its first block's width, a narrower VAE its first block's width,
    which is what the tiny test models do);
  - native resolution: the family's (512, 768 for SD2-v, 1024 for SDXL) unless modelspec.resolution says.
A diffusers config folder named like the checkpoint beside it (`model.safetensors` + `model/`) still wins.
FLUX.1's single files (the transformer only) are engine/flux_single_file.py's.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from engine.detection import Detection, TensorIndex, read_safetensors_index
from engine.families import Family
from engine.model_files import CONFIGS_DIR, BaseModelError

CLIP_TOKENIZER_DIR = CONFIGS_DIR / "clip_tokenizer"
CLIP_VOCAB_SIZE = 49408
TEMPLATES = {"sd1": "sd15", "sd2": "sd2", "sd2-v": "sd2-v", "sdxl": "sdxl", "flux-dev": "flux-dev",
             "flux-schnell": "flux-schnell", "flux2-klein": "flux2-klein", "flux2-klein-base": "flux2-klein",
             "z-image": "z-image", "z-image-turbo": "z-image", "qwen-image": "qwen-image"}

UNET = "model.diffusion_model."
VAE = "first_stage_model."
# (text encoder subfolder, tensor prefix, layout) per family; "clip" is transformers' layout, "openclip" OpenCLIP's.
TEXT_ENCODERS = {
    "sd1": [("text_encoder", "cond_stage_model.transformer.", "clip")],
    "sd2": [("text_encoder", "cond_stage_model.model.", "openclip")],
    "sd2-v": [("text_encoder", "cond_stage_model.model.", "openclip")],
    "sdxl": [("text_encoder", "conditioner.embedders.0.transformer.", "clip"),
             ("text_encoder_2", "conditioner.embedders.1.model.", "openclip")],
}
# The padding each family's tokenizers use: OpenAI's CLIP pads with its end token, OpenCLIP with token 0 ("!").
PAD_TOKENS = {"sd1": ["<|endoftext|>"], "sd2": ["!"], "sd2-v": ["!"], "sdxl": ["<|endoftext|>", "!"]}


# --- conventions for what tensor shapes do not record (the tiny builders follow them too) -------------------------


def unet_attention_heads(family_name: str, channels: int) -> int:
    if family_name == "sd1":
        return 8
    return max(1, channels // 64)


def unet_norm_groups(first_block: int) -> int:
    return min(32, max(1, first_block // 2))


def vae_norm_groups(first_block: int) -> int:
    return min(32, first_block)


def text_attention_heads(hidden: int) -> int:
    return hidden // 64 if hidden >= 64 else max(1, hidden // 8)


# --- tokenizers ------------------------------------------------------------------------------------------------


def clip_tokenizer(pad_token: str = "<|endoftext|>"):
    """CLIP's real BPE tokenizer (49,408 tokens) with the given padding, from the shipped vocab.json/merges.txt."""
    from transformers import CLIPTokenizer

    # transformers 5 ignores vocab_file= in the constructor; from_pretrained reads vocab.json + merges.txt.
    return CLIPTokenizer.from_pretrained(str(CLIP_TOKENIZER_DIR), model_max_length=77, pad_token=pad_token)


def family_tokenizers(family: Family) -> dict[str, Any]:
    pads = PAD_TOKENS[family.name]
    names = ["tokenizer", "tokenizer_2"][: len(pads)]
    return {name: clip_tokenizer(pad) for name, pad in zip(names, pads, strict=True)}


# --- fitting the family's configs to the file -----------------------------------------------------------------------


def _indices(index: TensorIndex, pattern: str) -> list[int]:
    found = set()
    regex = re.compile(pattern)
    for name in index.shapes:
        if m := regex.match(name):
            found.add(int(m.group(1)))
    return sorted(found)


def _need(index: TensorIndex, name: str) -> tuple[int, ...]:
    shape = index.shape(name)
    if shape is None:
        raise BaseModelError(f"the checkpoint lacks {name}; it is not a complete model of its family")
    return shape


def _depth(index: TensorIndex, prefix: str) -> int:
    return len(_indices(index, re.escape(prefix) + r"transformer_blocks\.(\d+)\."))


def fit_unet(index: TensorIndex, template: dict[str, Any], family: Family, sample_size: int,
             pooled_dim: int | None) -> dict[str, Any]:
    """The UNet config that matches the LDM tensors (input/middle/output blocks) of `index`."""
    config = dict(template)
    conv_in = _need(index, UNET + "input_blocks.0.0.weight")
    levels: list[dict[str, Any]] = [{"channels": None, "attention": False, "depth": 1, "resnets": 0}]
    for i in _indices(index, re.escape(UNET) + r"input_blocks\.(\d+)\.")[1:]:
        block = f"{UNET}input_blocks.{i}."
        if index.shape(block + "0.op.weight") is not None:
            levels.append({"channels": None, "attention": False, "depth": 1, "resnets": 0})
            continue
        level = levels[-1]
        level["channels"] = _need(index, block + "0.out_layers.3.weight")[0]
        level["resnets"] += 1
        if index.has(block + "1."):
            level["attention"] = True
            level["depth"] = _depth(index, block + "1.")
    levels = [lv for lv in levels if lv["resnets"]]
    layers = levels[0]["resnets"]
    channels = [int(lv["channels"]) for lv in levels]
    config["in_channels"] = int(conv_in[1])
    config["out_channels"] = int(_need(index, UNET + "out.2.weight")[0])
    config["block_out_channels"] = channels
    config["layers_per_block"] = layers
    config["down_block_types"] = ["CrossAttnDownBlock2D" if lv["attention"] else "DownBlock2D" for lv in levels]
    ups = []
    for j in range(len(levels)):
        first = f"{UNET}output_blocks.{j * (layers + 1)}.1."
        ups.append("CrossAttnUpBlock2D" if index.has(first + "transformer_blocks.") else "UpBlock2D")
    config["up_block_types"] = ups
    depths = [lv["depth"] for lv in levels]
    config["transformer_layers_per_block"] = depths if len(set(depths)) > 1 else depths[0]
    first_attention = next(i for i, lv in enumerate(levels) if lv["attention"])
    attention_block = f"{UNET}input_blocks.{first_attention * (layers + 1) + 1}.1."
    config["cross_attention_dim"] = int(_need(index, attention_block + "transformer_blocks.0.attn2.to_k.weight")[1])
    config["use_linear_projection"] = len(_need(index, attention_block + "proj_in.weight")) == 2
    heads = [unet_attention_heads(family.name, c) for c in channels]
    config["attention_head_dim"] = heads[0] if family.name == "sd1" else heads
    config["norm_num_groups"] = unet_norm_groups(channels[0])
    config["sample_size"] = sample_size
    label = index.shape(UNET + "label_emb.0.0.weight")
    if label is not None:
        config["addition_embed_type"] = "text_time"
        config["projection_class_embeddings_input_dim"] = int(label[1])
        if pooled_dim is not None:
            # SDXL's added conditioning: the pooled text embedding and six Fourier-embedded size/crop numbers.
            config["addition_time_embed_dim"] = (int(label[1]) - pooled_dim) // 6
    return config


def fit_vae(index: TensorIndex, template: dict[str, Any], resolution: int) -> dict[str, Any]:
    config = dict(template)
    levels = _indices(index, re.escape(VAE) + r"encoder\.down\.(\d+)\.")
    if not levels:
        raise BaseModelError("the checkpoint has no VAE (first_stage_model.*); it is not a complete model")
    channels = [int(_need(index, f"{VAE}encoder.down.{i}.block.0.conv2.weight")[0]) for i in levels]
    config["block_out_channels"] = channels
    config["down_block_types"] = ["DownEncoderBlock2D"] * len(channels)
    config["up_block_types"] = ["UpDecoderBlock2D"] * len(channels)
    config["layers_per_block"] = len(_indices(index, re.escape(VAE) + r"encoder\.down\.0\.block\.(\d+)\."))
    config["latent_channels"] = int(_need(index, VAE + "encoder.conv_out.weight")[0]) // 2
    config["in_channels"] = int(_need(index, VAE + "encoder.conv_in.weight")[1])
    config["out_channels"] = int(_need(index, VAE + "decoder.conv_out.weight")[0])
    config["mid_block_add_attention"] = index.has(VAE + "encoder.mid.attn_1.")
    config["norm_num_groups"] = vae_norm_groups(channels[0])
    config["sample_size"] = resolution
    return config


def fit_text_encoder(index: TensorIndex, template: dict[str, Any], prefix: str, layout: str,
                     family: Family, tokenizer) -> dict[str, Any]:
    config = dict(template)
    if layout == "clip":
        if index.has(prefix + "text_model."):
            prefix += "text_model."
        vocab, hidden = _need(index, prefix + "embeddings.token_embedding.weight")
        positions = _need(index, prefix + "embeddings.position_embedding.weight")[0]
        layers = len(_indices(index, re.escape(prefix) + r"encoder\.layers\.(\d+)\."))
        intermediate = _need(index, prefix + "encoder.layers.0.mlp.fc1.weight")[0]
    else:
        vocab, hidden = _need(index, prefix + "token_embedding.weight")
        positions = _need(index, prefix + "positional_embedding")[0]
        layers = len(_indices(index, re.escape(prefix) + r"transformer\.resblocks\.(\d+)\."))
        intermediate = _need(index, prefix + "transformer.resblocks.0.mlp.c_fc.weight")[0]
        if family.name in ("sd2", "sd2-v") and layers == 24:
            # SD2 conditions on OpenCLIP-H's penultimate block; diffusers' converter drops block 23.
            layers = 23
        projection = index.shape(prefix + "text_projection")
        if projection is not None and family.name == "sdxl":
            config["projection_dim"] = int(projection[1])
    if vocab != CLIP_VOCAB_SIZE:
        raise BaseModelError(f"the checkpoint's text encoder has {vocab} tokens, not CLIP's {CLIP_VOCAB_SIZE}; put its "
                             "tokenizer beside it in a diffusers config folder named like the file")
    config.update(vocab_size=int(vocab), hidden_size=int(hidden), max_position_embeddings=int(positions),
                  num_hidden_layers=int(layers), intermediate_size=int(intermediate),
                  num_attention_heads=text_attention_heads(int(hidden)),
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    return config


def write_fitted_configs(index: TensorIndex, detection: Detection, target: Path, tokenizers: dict[str, Any]) -> Path:
    """A diffusers config folder for this checkpoint: the family's template with every shape taken from the file."""
    family = detection.family
    template = CONFIGS_DIR / TEMPLATES[family.name]
    shutil.copytree(template, target, dirs_exist_ok=True)

    def load(sub: str, name: str = "config.json") -> dict[str, Any]:
        return json.loads((template / sub / name).read_text(encoding="utf-8"))

    def save(sub: str, config: dict[str, Any], name: str = "config.json") -> None:
        (target / sub).mkdir(parents=True, exist_ok=True)
        (target / sub / name).write_text(json.dumps(config, indent=2), encoding="utf-8")

    resolution = detection.resolution or family.resolution
    vae = fit_vae(index, load("vae"), resolution)
    save("vae", vae)
    vae_factor = 2 ** (len(vae["block_out_channels"]) - 1)
    pooled = None
    for (sub, prefix, layout), tok in zip(TEXT_ENCODERS[family.name], tokenizers.values(), strict=True):
        config = fit_text_encoder(index, load(sub), prefix, layout, family, tok)
        save(sub, config)
        if sub == "text_encoder_2":
            pooled = config["projection_dim"]
    save("unet", fit_unet(index, load("unet"), family, resolution // vae_factor, pooled))
    scheduler = load("scheduler", "scheduler_config.json")
    if detection.prediction_type:
        scheduler["prediction_type"] = detection.prediction_type
    save("scheduler", scheduler, "scheduler_config.json")
    return target


def beside(checkpoint: Path) -> Path | None:
    """A user's diffusers config folder named like the checkpoint (`sd15.safetensors` + `sd15/`), if there is one."""
    folder = checkpoint.with_suffix("")
    return folder if (folder / "model_index.json").is_file() else None


def load_single_file(pipeline_class, checkpoint: Path, detection: Detection, common: dict[str, Any]):
    """The family's pipeline from one original-layout file, fully offline."""
    family = detection.family
    if checkpoint.suffix != ".safetensors":
        raise BaseModelError(f"{checkpoint.name}: single-file checkpoints must be .safetensors")
    tokenizers = family_tokenizers(family)
    user_folder = beside(checkpoint)
    if user_folder is not None:
        # The user's configs; their own tokenizer if they put one there, else CLIP's.
        for name in list(tokenizers):
            if any((user_folder / name / f).is_file() for f in ("tokenizer.json", "vocab.json")):
                tokenizers.pop(name)
        return pipeline_class.from_single_file(str(checkpoint), config=str(user_folder), **tokenizers, **common)
    index = read_safetensors_index(checkpoint)
    with tempfile.TemporaryDirectory(prefix="kabina-configs-") as tmp:
        config = write_fitted_configs(index, detection, Path(tmp) / "configs", tokenizers)
        return pipeline_class.from_single_file(str(checkpoint), config=str(config), **tokenizers, **common)
