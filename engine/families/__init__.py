"""The base-model families Kabina serves (SD1.x, SD2.x, SDXL, FLUX.1, FLUX.2 [klein], Z-Image, Qwen-Image): the
registry (FAMILIES, get_family, SUPPORTED) and each family's /draw limits (FAMILY_LIMITS). Every name of the
package is importable from here.

  base          the Family record (how a family is loaded, trained, drawn and exported) and its sizes per aspect;
  sd            SD1.x, SD2.x (512-base, 768-v), SDXL;
  flux1         FLUX.1-dev, FLUX.1-schnell;
  qwen_encoded  FLUX.2 [klein] (and base), Z-Image (and Turbo), Qwen-Image: a Qwen text encoder each.

Torch-free on purpose: FAMILY_LIMITS (the /draw limits) are read without importing torch or diffusers.
Every default says where it comes from. "Recipe" means diffusers' own DreamBooth-LoRA example scripts
(examples/dreambooth/train_dreambooth_lora.py, train_dreambooth_lora_sdxl.py, train_dreambooth_lora_flux.py and
their READMEs; train_dreambooth_lora_flux2_klein.py and README_flux2.md; train_dreambooth_lora_z_image.py;
train_dreambooth_lora_qwen_image.py and README_qwen.md); "pipeline" means the diffusers pipeline class's own
__call__ defaults (diffusers 0.42).
"""
from __future__ import annotations

from typing import Any

from engine.families.base import (
    ASPECT_RATIOS,
    ASPECT_TOLERANCE,
    CLIP_TOKEN_LIMIT,
    FLUX_DEV_SAMPLERS,
    FLUX_SCHNELL_SAMPLERS,
    MAX_IMAGES,
    SD_SAMPLERS,
    Family,
    parse_aspect,
    size_for_aspect,
)
from engine.families.flux1 import FLUX_DEV, FLUX_SCHNELL
from engine.families.qwen_encoded import FLUX2_KLEIN, FLUX2_KLEIN_BASE, QWEN_IMAGE, Z_IMAGE, Z_IMAGE_TURBO
from engine.families.sd import SD1, SD2, SD2_V, SDXL

FAMILIES: dict[str, Family] = {f.name: f for f in (SD1, SD2, SD2_V, SDXL, FLUX_DEV, FLUX_SCHNELL, FLUX2_KLEIN,
                                                   FLUX2_KLEIN_BASE, Z_IMAGE, Z_IMAGE_TURBO, QWEN_IMAGE)}

SUPPORTED = ("SD1.x, SD2.x (512-base and 768-v), SDXL 1.0 base, FLUX.1-dev, FLUX.1-schnell, FLUX.2 [klein] "
             "(4B, 9B and their base variants), Z-Image, Z-Image-Turbo and Qwen-Image")


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}") from None


# What the bot reads for /draw, per family name (plain data: ints, floats, strings, lists).
FAMILY_LIMITS: dict[str, dict[str, Any]] = {name: family.limits() for name, family in FAMILIES.items()}

__all__ = [
    "ASPECT_RATIOS", "ASPECT_TOLERANCE", "CLIP_TOKEN_LIMIT", "FAMILIES", "FAMILY_LIMITS", "FLUX2_KLEIN",
    "FLUX2_KLEIN_BASE", "FLUX_DEV", "FLUX_DEV_SAMPLERS", "FLUX_SCHNELL", "FLUX_SCHNELL_SAMPLERS", "MAX_IMAGES",
    "QWEN_IMAGE", "SD1", "SD2", "SD2_V", "SDXL", "SD_SAMPLERS", "SUPPORTED", "Z_IMAGE", "Z_IMAGE_TURBO", "Family",
    "get_family", "parse_aspect", "size_for_aspect",
]
