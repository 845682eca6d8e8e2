"""What a base-model family is (the Family record: how it is loaded, trained, drawn and exported) and the sizes it
draws at (parse_aspect, size_for_aspect); the families themselves are in engine.families' other modules.

Torch-free on purpose: the bot-facing limits are built from these records without importing torch or diffusers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from storage.contract import ASPECT_RATIOS as CONTRACT_ASPECT_RATIOS
from storage.contract import MAX_IMAGES_PER_DRAW

# The sampler names users type (`/draw … --sampler euler-a`), the A1111 spellings most SD users know.
SD_SAMPLERS: tuple[str, ...] = ("dpm++2m-karras", "euler-a", "euler", "ddim", "default")
# FLUX.1 is a flow-matching model: only flow-matching schedulers can sample it. "dpm++2m" is DPM-Solver++ 2M in its
# flow-matching form (diffusers' DPMSolverMultistepScheduler with use_flow_sigmas); FluxPipeline hands it the
# dynamic shift `mu`, which that scheduler accepts only with dynamic shifting on, so schnell (a fixed shift of 1)
# gets the Euler sampler alone.
FLUX_DEV_SAMPLERS: tuple[str, ...] = ("default", "euler", "dpm++2m")
FLUX_SCHNELL_SAMPLERS: tuple[str, ...] = ("default", "euler")

ASPECT_RATIOS: tuple[str, ...] = CONTRACT_ASPECT_RATIOS  # the job contract's list: what --ar may name
# How far a size's ratio may be from the asked one (|ln(w/h) - ln(ratio)|) when trading shape for pixels: 0.05 is
# 5 %, which is what lets SDXL's 3:2 come out as its official 1216x832 bucket instead of a smaller exact 1152x768.
ASPECT_TOLERANCE = 0.05

CLIP_TOKEN_LIMIT = 75  # CLIP reads 77 positions: <|startoftext|>, 75 text tokens, <|endoftext|>
MAX_IMAGES = MAX_IMAGES_PER_DRAW  # pictures per /draw request, every family (the job contract's limit)


@dataclass(frozen=True)
class Family:
    """One base-model family: how it is loaded, trained, drawn and exported."""

    name: str  # the short name used everywhere: sd1, sd2, sd2-v, sdxl, flux-dev, flux-schnell, flux2-klein, …
    title: str
    pipeline: str  # the diffusers pipeline class
    denoiser: str  # the pipeline attribute LoRA trains: "unet" or "transformer"
    text_encoders: tuple[str, ...]  # pipeline attributes, in the order the pipeline uses them
    loss: str  # "epsilon" | "v_prediction" | "flow_matching" (the SD families follow the scheduler's prediction_type)

    # --- drawing ---
    resolution: int  # native side in pixels
    multiple: int  # width and height are multiples of this
    max_side: int
    draw_steps: int
    guidance: float
    max_steps: int
    samplers: tuple[str, ...]
    default_sampler: str
    own_scheduler: str  # what `default` means for the reference model of the family
    negative_prompt: bool  # does the family's pipeline use a negative prompt at all
    prompt_tokens: int  # text tokens the main text encoder reads
    guidance_embedded: bool = False  # FLUX.1-dev: guidance is an input of the transformer, not CFG
    # How the denoiser is fed: "sd" (UNet), "flux1" (FLUX.1: T5 + CLIP, 2x2-packed latents, 3-axis position ids),
    # "flux2" (FLUX.2 [klein]: Qwen3 layers, patchified batch-normed latents, 4-axis position ids; engine.flux2).
    architecture: str = "sd"
    takes_references: bool = False  # the pipeline conditions on reference pictures (`image=[…]`): drafts

    # --- training ---
    lora_targets: tuple[str, ...] = ()
    text_encoder_lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")
    steps_per_photo: int = 100
    min_steps: int = 300
    max_steps_train: int = 1500
    learning_rate: float = 1e-4
    rank_small_set: int = 4
    rank_large_set: int = 8
    class_images: int = 200
    # Prior preservation's method (engine.train_steps.PRIOR_METHODS), chosen by the toy world across seeds
    # (python -m engine eval-toy; README "Prior preservation"): the frozen base model's own output holds the class
    # as well as the paper's class images, without drawing a class set first.
    prior: str = "output"
    # Training side in pixels; None: the family's native resolution. The diffusers recipes train SDXL and FLUX at
    # --resolution 512 as readily as 1024 (a quarter of the pixels: about 3-4x less per step).
    train_resolution: int | None = None
    class_image_steps: int = 25
    class_image_guidance: float = 7.5
    class_image_sampler: str = "default"  # the model's own scheduler: class images show its prior as it comes
    train_guidance: float | None = None  # the guidance-embedding value fed while training (FLUX.1-dev)
    weighting_scheme: str = "none"  # flow matching: timestep density and loss weighting (SD3 paper's schemes)
    vae_fp16_overflows: bool = False  # the family's stock VAE produces inf/NaN in fp16 (SDXL): upcast it

    # --- export ---
    kohya_unet_names: str = "diffusers"  # "diffusers" (lora_unet_down_blocks_…), "sgm" (lora_unet_input_blocks_…),
    # "onetrainer" (lora_transformer_…: FLUX in a layout ComfyUI and diffusers both read at any width)
    kohya_text_encoder_prefixes: tuple[str, ...] = ("lora_te",)
    ss_base_model_version: str = "sd_v1"
    ss_v2: bool = False
    ss_v_parameterization: bool = False
    modelspec_architecture: str = "stable-diffusion-v1"
    modelspec_implementation: str = "diffusers"

    @property
    def pixel_budget(self) -> int:
        return self.resolution * self.resolution

    @property
    def is_flux(self) -> bool:
        """A flow-matching transformer family (FLUX.1 or FLUX.2); `architecture` tells the two apart."""
        return self.loss == "flow_matching"

    @property
    def lora_target_modules(self) -> list[str] | str:
        """PEFT's target_modules: module-name suffixes, or one full-match regex (a single entry starting ".*")."""
        if len(self.lora_targets) == 1 and self.lora_targets[0].startswith(".*"):
            return self.lora_targets[0]
        return list(self.lora_targets)

    def limits(self) -> dict[str, Any]:
        """What a caller (the bot's /draw) may ask of this family, as plain data."""
        return {
            "family": self.name,
            "title": self.title,
            "resolution": self.resolution,
            "multiple": self.multiple,
            "max_side": self.max_side,
            "pixel_budget": self.pixel_budget,
            "default_steps": self.draw_steps,
            "max_steps": self.max_steps,
            "default_guidance": self.guidance,
            "guidance_embedded": self.guidance_embedded,
            "samplers": list(self.samplers),
            "default_sampler": self.default_sampler,
            "aspect_ratios": list(ASPECT_RATIOS),
            "sizes": {ar: list(size_for_aspect(self, ar)) for ar in ASPECT_RATIOS},
            "negative_prompt": self.negative_prompt,
            "prompt_tokens": self.prompt_tokens,
            "max_images": MAX_IMAGES,
        }


def parse_aspect(aspect: str) -> float:
    """`3:2` → 1.5 (width over height); anything but two positive numbers is a ValueError."""
    try:
        w, h = (float(part) for part in str(aspect).split(":"))
    except ValueError:
        raise ValueError(f"an aspect ratio looks like 3:2, not {aspect!r}") from None
    if not (w > 0 and h > 0 and math.isfinite(w) and math.isfinite(h)):
        raise ValueError(f"an aspect ratio looks like 3:2, not {aspect!r}")
    return w / h


def size_for_aspect(family: Family, aspect: str, *, resolution: int | None = None,
                    multiple: int | None = None, max_side: int | None = None) -> tuple[int, int]:
    """(width, height) for an aspect ratio: multiples of the family's grid, within its pixel budget.

    The budget is the native resolution squared (the pixel count the model was trained on). Among the sizes on
    the grid that fit the budget and the side limit, the largest whose ratio is within ASPECT_TOLERANCE of the
    asked one wins; if none is that close, the closest ratio (then the largest) does. For SDXL this yields its
    official buckets: 3:2 → 1216x832, 16:9 → 1344x768. `resolution`/`multiple`/`max_side` override the family's
    (a smaller model of the family, e.g. the tiny test models).
    """
    ratio = parse_aspect(aspect)
    native = resolution or family.resolution
    step = multiple or family.multiple
    limit = max_side or family.max_side
    budget = native * native
    target = math.log(ratio)
    best: tuple[int, int] | None = None
    best_key: tuple[float, ...] | None = None
    for height in range(step, limit + 1, step):
        ideal = ratio * height
        for width in {max(step, int(ideal // step) * step), max(step, int(math.ceil(ideal / step)) * step)}:
            if width > limit or width * height > budget:
                continue
            error = abs(math.log(width / height) - target)
            close = error <= ASPECT_TOLERANCE + 1e-12
            # Close enough: the most pixels win (then the closer ratio); otherwise the closest ratio wins.
            key = (0.0, -width * height, error) if close else (1.0, error, -width * height)
            if best_key is None or key < best_key:
                best, best_key = (width, height), key
    if best is None:
        raise ValueError(f"no {aspect} size fits {native}² pixels on a {step}-pixel grid")
    return best
