"""Which family a base model is, from a diffusers folder's configs or a single file's tensor names (torch-free)."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.families import FAMILIES, SUPPORTED, Family
from engine.model_files import BaseModelError, UnsupportedModel, read_json

# Pipelines people may point BASE_MODEL at that Kabina does not serve, named the way users know them.
_KNOWN_OTHERS = {
    "StableDiffusion3Pipeline": "Stable Diffusion 3",
    "StableDiffusionXLImg2ImgPipeline": "the SDXL refiner",
    "StableDiffusionInpaintPipeline": "an inpainting model",
    "StableDiffusionXLInpaintPipeline": "an SDXL inpainting model",
    "StableDiffusionUpscalePipeline": "an upscaler",
    "StableCascadeCombinedPipeline": "Stable Cascade",
    "PixArtAlphaPipeline": "PixArt-α",
    "KandinskyV22Pipeline": "Kandinsky 2.2",
    "FluxFillPipeline": "FLUX.1 Fill",
    "FluxKontextPipeline": "FLUX.1 Kontext",
    "QwenImageEditPipeline": "Qwen-Image-Edit",
}


@dataclass(frozen=True)
class Detection:
    """What BASE_MODEL is: its family and the facts that decide how it loads."""

    family: Family
    source: str  # "folder" | "single-file"
    prediction_type: str | None = None  # a single file's, from its metadata or the family's convention
    resolution: int | None = None  # a single file's native side, from modelspec.resolution when it says
    notes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def refuse(path: Path | str, found: str) -> UnsupportedModel:
    return UnsupportedModel(f"BASE_MODEL {path} is {found}; Kabina supports {SUPPORTED}")


# FLUX.2 [dev]: a 32B transformer and a 24B Mistral text encoder. Its LoRA training needs far more than one 80 GB
# GPU holds unquantised (README_flux2.md trains it with fp8, 8-bit Adam, offloading and a remote text encoder),
# so it is refused with what serves the same users on one GPU.
FLUX2_DEV_REFUSAL = ("FLUX.2 [dev] (a 32B transformer with a 24B text encoder, too large to train a LoRA on one "
                     "80 GB GPU); FLUX.2 [klein] 4B or 9B is the FLUX.2 that fits")


def family_from_configs(pipeline_class: str, configs: dict[str, dict[str, Any]], where: Path | str) -> Family:
    """The family of a pipeline from its class name and component configs (unet, text_encoder, scheduler, …)."""
    if pipeline_class == "Flux2Pipeline":
        raise refuse(where, FLUX2_DEV_REFUSAL)
    unet = configs.get("unet", {})
    text_encoder = configs.get("text_encoder", {})
    scheduler = configs.get("scheduler", {})
    if pipeline_class == "StableDiffusionPipeline":
        if int(unet.get("in_channels", 4)) != 4:
            raise refuse(where, f"a UNet with {unet.get('in_channels')} input channels (an inpainting or depth model)")
        # SD2 reads prompts with OpenCLIP ViT-H (GELU, 1024 wide); SD1 with OpenAI's CLIP ViT-L (quick-GELU, 768).
        openclip = text_encoder.get("hidden_act") == "gelu" or unet.get("cross_attention_dim") == 1024
        if not openclip:
            return FAMILIES["sd1"]
        return FAMILIES["sd2-v" if scheduler.get("prediction_type") == "v_prediction" else "sd2"]
    if pipeline_class == "StableDiffusionXLPipeline":
        if not configs.get("text_encoder"):
            raise refuse(where, "an SDXL pipeline without its first text encoder (the refiner's layout)")
        return FAMILIES["sdxl"]
    if pipeline_class == "FluxPipeline":
        return FAMILIES["flux-dev" if configs.get("transformer", {}).get("guidance_embeds") else "flux-schnell"]
    if pipeline_class == "ZImagePipeline":
        # Z-Image and Z-Image-Turbo ship identical configs; only the name tells the distilled one apart.
        return FAMILIES["z-image-turbo" if "turbo" in str(where).lower() else "z-image"]
    if pipeline_class == "QwenImagePipeline":
        return FAMILIES["qwen-image"]
    if pipeline_class == "Flux2KleinPipeline":
        # model_index.json's is_distilled: klein 4B/9B are step-distilled, the "-base" checkpoints are not.
        distilled = bool(configs.get("pipeline", {}).get("is_distilled", False))
        return FAMILIES["flux2-klein" if distilled else "flux2-klein-base"]
    found = _KNOWN_OTHERS.get(pipeline_class, f"a {pipeline_class or 'pipeline of unknown kind'}")
    raise refuse(where, found)


def detect_folder(folder: Path) -> Detection:
    index = read_json(folder / "model_index.json")
    if not index:
        raise BaseModelError(f"{folder} has no readable model_index.json; BASE_MODEL must be a diffusers folder")
    configs = {
        "unet": read_json(folder / "unet" / "config.json"),
        "text_encoder": read_json(folder / "text_encoder" / "config.json"),
        "scheduler": read_json(folder / "scheduler" / "scheduler_config.json"),
        "transformer": read_json(folder / "transformer" / "config.json"),
    }
    configs["pipeline"] = index
    family = family_from_configs(str(index.get("_class_name", "")), configs, folder)
    return Detection(family=family, source="folder", prediction_type=configs["scheduler"].get("prediction_type"))


# --- single files -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorIndex:
    """A checkpoint's tensor names and shapes and its metadata, read without loading a single weight."""

    shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, str]

    def has(self, prefix: str) -> bool:
        return any(name.startswith(prefix) for name in self.shapes)

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.shapes.get(name)


def read_safetensors_index(path: Path) -> TensorIndex:
    """A .safetensors header: 8 bytes of little-endian length, then that much JSON (names, dtypes, shapes)."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if not 2 <= length <= 100 * 2**20:
                raise ValueError(f"header length {length}")
            header = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error) as exc:
        raise BaseModelError(f"{path} is not a readable .safetensors file ({exc})") from None
    metadata = {str(k): str(v) for k, v in (header.pop("__metadata__", None) or {}).items()}
    shapes = {name: tuple(int(d) for d in entry.get("shape", ())) for name, entry in header.items()}
    return TensorIndex(shapes=shapes, metadata=metadata)


def _modelspec_resolution(metadata: dict[str, str]) -> int | None:
    value = metadata.get("modelspec.resolution", "")
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        return None
    return width if width == height and width > 0 else None


def family_from_tensors(index: TensorIndex, where: Path | str) -> Detection:
    """The family of an original-layout (A1111/ComfyUI/BFL) checkpoint from the names its tensors carry."""
    names_flux = ("double_blocks.", "model.diffusion_model.double_blocks.")
    meta = index.metadata
    arch = meta.get("modelspec.architecture", "")
    declared = meta.get("modelspec.prediction_type", "")
    resolution = _modelspec_resolution(meta)
    if any(index.has(p) for p in names_flux):
        dev = any("guidance_in." in name for name in index.shapes)
        return Detection(FAMILIES["flux-dev" if dev else "flux-schnell"], "single-file", resolution=resolution)
    if index.has("joint_blocks.") or index.has("model.diffusion_model.joint_blocks."):
        raise refuse(where, "Stable Diffusion 3")
    conv_in = index.shape("model.diffusion_model.input_blocks.0.0.weight")
    if conv_in is not None and len(conv_in) == 4 and conv_in[1] != 4:
        raise refuse(where, f"a UNet with {conv_in[1]} input channels (an inpainting or depth model)")
    if index.has("conditioner.embedders.1.model.") and index.has("conditioner.embedders.0.transformer."):
        return Detection(FAMILIES["sdxl"], "single-file", prediction_type=_prediction(declared, "epsilon"),
                         resolution=resolution)
    if index.has("conditioner.embedders.0.model."):
        raise refuse(where, "the SDXL refiner")
    if index.has("cond_stage_model.model."):
        # SD2.x's two variants share every tensor shape; the file must say which. Without modelspec metadata we
        # follow diffusers' converter (single_file_utils: v-prediction unless the 512-base's global step) and
        # A1111's default config: the 768-v model, the common SD 2.x download.
        if declared:
            v = _prediction(declared, "v_prediction") == "v_prediction"
        else:
            v = not arch.startswith("stable-diffusion-v2-512")
        family = FAMILIES["sd2-v" if v else "sd2"]
        return Detection(family, "single-file", prediction_type="v_prediction" if v else "epsilon",
                         resolution=resolution, notes={"variant_from": "metadata" if declared or arch else "default"})
    if index.has("cond_stage_model.transformer."):
        return Detection(FAMILIES["sd1"], "single-file", prediction_type=_prediction(declared, "epsilon"),
                         resolution=resolution)
    if index.has("model.diffusion_model."):
        raise refuse(where, "a UNet without its text encoder and VAE")
    raise refuse(where, "not a Stable Diffusion or FLUX.1 checkpoint")


def _prediction(declared: str, default: str) -> str:
    # SAI model spec spells the two SD prediction types "epsilon" and "v".
    return {"epsilon": "epsilon", "v": "v_prediction", "v_prediction": "v_prediction"}.get(declared.lower(), default)


# What a FLUX.1 components folder must hold besides its transformer (the pipeline's other parts).
FLUX_COMPONENTS = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae", "scheduler")


def flux_components(checkpoint: Path, family: Family) -> Path:
    """The diffusers folder beside a FLUX.1 transformer file (`flux1-dev.safetensors` + `flux1-dev/`), or a refusal.

    BFL's FLUX.1 files hold the transformer only; the rest of the pipeline must come from somewhere offline.
    """
    folder = checkpoint.with_suffix("")
    index = read_json(folder / "model_index.json")
    missing = [name for name in FLUX_COMPONENTS if not (folder / name).is_dir()]
    if index.get("_class_name") == "FluxPipeline" and not missing:
        return folder
    found = (f"; {folder.name}/ lacks {', '.join(missing)}" if index.get("_class_name") == "FluxPipeline" else
             f"; {folder.name}/ is not a diffusers FluxPipeline folder" if folder.is_dir() else "")
    raise BaseModelError(
        f"{checkpoint.name} is a {family.title} single file, which holds the transformer only{found}: put the diffusers "
        f"FLUX.1 folder (model_index.json, {', '.join(FLUX_COMPONENTS)}; its transformer/ may be left out) beside it "
        f"as {folder}, or set BASE_MODEL to a complete diffusers FLUX.1 folder"
    )


def detect(path: str | Path) -> Detection:
    """Detect BASE_MODEL's family, or raise BaseModelError/UnsupportedModel with one line saying why."""
    path = Path(path).expanduser()
    if path.is_dir():
        return detect_folder(path)
    if path.is_file() and path.suffix == ".safetensors":
        return family_from_tensors(read_safetensors_index(path), path)
    if path.is_file():
        raise BaseModelError(f"BASE_MODEL {path} is a {path.suffix or 'suffix-less'} file; give a diffusers folder or "
                             "a .safetensors checkpoint")
    raise BaseModelError(f"BASE_MODEL {path} does not exist")


def family_of(pipe) -> Family:
    """The family of a loaded pipeline: recorded at load, or read from its components' configs."""
    known = getattr(pipe, "_kabina_family", None)
    if known is not None:
        return FAMILIES[known]
    configs = {}
    for name in ("unet", "text_encoder", "scheduler", "transformer"):
        component = getattr(pipe, name, None)
        config = getattr(component, "config", None)
        if config is not None:
            configs[name] = dict(config.to_dict() if hasattr(config, "to_dict") else config)
    configs["pipeline"] = dict(getattr(pipe, "config", None) or {})
    family = family_from_configs(type(pipe).__name__, configs, type(pipe).__name__)
    pipe._kabina_family = family.name
    return family
