"""A draw request: the draw job's options (by the contract's names) built once, and checked once — against the
job contract's limits (storage.contract) and then the loaded model's own (its family's, at its size)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import ValidationError

from engine.detection import family_of
from engine.families import Family, size_for_aspect
from storage.contract import DEFAULT_IMAGE_CHANGE, UPSCALE_FACTOR, DrawPayload


class DrawError(Exception):
    """A request we cannot draw (bad parameters, unreadable LoRA); the message is fit for the user."""


@dataclass
class DrawRequest:
    """One draw: the draw job's options (DrawPayload, by the same names) and the LoRA file of its model."""

    prompt: str
    negative_prompt: str = ""
    n: int = 1
    steps: int | None = None  # None: the family's default (SD1.x 25, SDXL 30, FLUX.1-dev 28, schnell 4)
    guidance: float | None = None  # None: the family's (7.5, SDXL 5, FLUX.1-dev 3.5 embedded, schnell none)
    seeds: list[int] | None = None  # None: random seeds, returned in the result
    width: int | None = None  # None: from aspect_ratio, else the model's own resolution
    height: int | None = None
    lora: Path | None = None  # None: the base model
    # "Variations of #k": every image starts from seed k's noise blended with its own variation seed's noise.
    variation_seeds: list[int] | None = None
    variation_strength: float = 0.0
    sampler: str | None = None  # None: the family's default (dpm++2m-karras for SD, the model's own for FLUX)
    strength: float = 1.0  # how much of the LoRA: 0 is the base picture, 1 the LoRA as trained
    aspect_ratio: str | None = None  # "3:2", "2:3", "16:9", "9:16", "1:1"
    # Image-to-image: start from this picture (the payload's blob key, read) and redraw `image_change` of it
    # (1: nothing of it kept); its shape decides the size. `upscale`: the picture enlarged and refined.
    init_image: Image.Image | None = None
    image_change: float = DEFAULT_IMAGE_CHANGE
    upscale: bool = False
    # Reference pictures the model conditions on (FLUX.2 [klein]'s `image=[…]`): a draft from the user's photos.
    references: list[Image.Image] | None = None

    @classmethod
    def from_payload(cls, payload: DrawPayload, *, lora: Path | None = None, init_image: Image.Image | None = None,
                     references: list[Image.Image] | None = None, prompt: str | None = None,
                     default_steps: int | None = None) -> DrawRequest:
        """A draw job's request: its options as they are, its model's LoRA file, the picture its `init_image` key
        names, a draft's reference photos and prompt, and `default_steps` (DRAW_STEPS) where it names none (None:
        the family's)."""
        options = payload.model_dump(exclude=set(_NOT_OPTIONS))
        if options["steps"] is None:
            options["steps"] = default_steps
        if prompt is not None:
            options["prompt"] = prompt
        return cls(**options, lora=lora, init_image=init_image, references=references)

    def check_limits(self) -> None:
        """The job contract's limits, defined once in storage.contract (DrawPayload's fields); a DrawError names
        the first one broken. (The starting picture is checked by the photo rules when it is read.)"""
        options = {name: getattr(self, name) for name in DrawPayload.model_fields if name not in _NOT_OPTIONS}
        try:
            DrawPayload.model_validate({"model_id": None, **options})
        except ValidationError as exc:
            raise DrawError(_broken_limit(exc.errors()[0])) from None


# The payload's fields that are not options of the drawing: whose model, the key of the starting picture, and
# the model a draft is of (the draw job reads them into `lora`, `init_image` and `references`).
_NOT_OPTIONS = ("model_id", "init_image", "draft_of")


def _broken_limit(error: dict[str, Any]) -> str:
    name = str(error["loc"][0]) if error["loc"] else "request"
    field = DrawPayload.model_fields.get(name)
    bounds = {type(m).__name__: m for m in (field.metadata if field else ())}
    if "Ge" in bounds and "Le" in bounds:
        return f"{name} must be between {bounds['Ge'].ge:g} and {bounds['Le'].le:g}"
    return f"{name}: {error['msg']}"


@dataclass(frozen=True)
class ModelLimits:
    """The limits of one loaded model: its family's, scaled to its own native size (the same for full-size ones)."""

    family: Family
    resolution: int
    multiple: int
    max_side: int

    def size_for(self, aspect: str) -> tuple[int, int]:
        return size_for_aspect(self.family, aspect, resolution=self.resolution, multiple=self.multiple,
                               max_side=self.max_side)


def structural_multiple(pipe) -> int:
    """The finest grid the model's shapes allow: VAE factor × 2 per UNet downsampling (FLUX: × 2 for packing)."""
    factor = pipe.vae_scale_factor
    if family_of(pipe).denoiser != "unet":
        return factor * 2
    return factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)


def limits_of(pipe) -> ModelLimits:
    """The family's grid and side limit scaled to this model's native resolution, never finer than its shapes allow."""
    from engine.base_model import training_resolution

    family = family_of(pipe)
    native = training_resolution(pipe)
    structure = structural_multiple(pipe)
    scaled = max(1, family.multiple * native // family.resolution)
    multiple = max(structure, scaled - scaled % structure)
    max_side = max(native, family.max_side * native // family.resolution)
    return ModelLimits(family=family, resolution=native, multiple=multiple, max_side=max_side - max_side % multiple)


def seeds_for(request: DrawRequest) -> list[int]:
    """One seed per picture (`n` within the contract's limit, checked before)."""
    given = list(request.seeds or [])
    if not given:
        return [secrets.randbelow(2**31) for _ in range(request.n)]
    # A single seed for several images: seed, seed+1, … so each picture can be redrawn alone.
    while len(given) < request.n:
        given.append(given[-1] + 1)
    return [int(s) % 2**32 for s in given[: request.n]]


def _side(value: int, limits: ModelLimits) -> int:
    side = max(limits.multiple, min(limits.max_side, int(value)))
    return side - side % limits.multiple


def size_of(request: DrawRequest, limits: ModelLimits) -> tuple[int, int]:
    """Width and height of a request: the aspect ratio's size, or the given sides on the model's grid."""
    if request.aspect_ratio:
        if request.width is not None or request.height is not None:
            raise DrawError("give either an aspect ratio or a width and height, not both")
        try:
            return limits.size_for(request.aspect_ratio)
        except ValueError as exc:
            raise DrawError(str(exc)) from None
    width = limits.resolution if request.width is None else request.width
    height = limits.resolution if request.height is None else request.height
    return _side(width, limits), _side(height, limits)


def size_from_picture(picture: Image.Image, limits: ModelLimits, upscale: bool) -> tuple[int, int]:
    """The size to draw a picture-based request at: the picture's shape within the model's pixel budget, or for
    an upscale UPSCALE_FACTOR times the picture's sides (on the model's grid, at most that times its largest side)."""
    width, height = picture.size
    if upscale:
        cap = UPSCALE_FACTOR * limits.max_side
        scale = min(UPSCALE_FACTOR, cap / max(width, height))
    else:
        scale = limits.resolution / (width * height) ** 0.5

    def side(value: float) -> int:
        rounded = int(value) - int(value) % limits.multiple
        return max(limits.multiple, rounded)

    return side(width * scale), side(height * scale)
