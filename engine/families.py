"""The base-model families Kabina serves (SD1.x, SD2.x, SDXL, FLUX.1, FLUX.2 [klein], Z-Image, Qwen-Image), their
defaults and limits.

Torch-free on purpose: the bot can read FAMILY_LIMITS (its /draw limits) without importing torch or diffusers.
Every default says where it comes from. "Recipe" means diffusers' own DreamBooth-LoRA example scripts
(examples/dreambooth/train_dreambooth_lora.py, train_dreambooth_lora_sdxl.py, train_dreambooth_lora_flux.py and
their READMEs; train_dreambooth_lora_flux2_klein.py and README_flux2.md; train_dreambooth_lora_z_image.py;
train_dreambooth_lora_qwen_image.py and README_qwen.md); "pipeline" means the diffusers pipeline class's own __call__ defaults (diffusers 0.42).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from storage.contract import ASPECT_RATIOS as CONTRACT_ASPECT_RATIOS
from storage.contract import MAX_DRAW_STEPS, MAX_IMAGES_PER_DRAW

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


_SD_UNET_ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")  # every recipe's UNet LoRA targets (self and cross attention)

SD1 = Family(
    name="sd1",
    title="Stable Diffusion 1.x",
    pipeline="StableDiffusionPipeline",
    denoiser="unet",
    text_encoders=("text_encoder",),
    loss="epsilon",
    resolution=512,  # SD1.5 was trained at 512² (its UNet sample_size 64 × VAE factor 8)
    # A four-level UNet halves the latent three times: sides divisible by 8 (VAE) × 8 = 64 never need padding.
    multiple=64,
    max_side=1024,  # past twice the native side SD1.x repeats subjects (two heads); A1111's slider also stops there
    # DPM++ 2M Karras converges in ~20-30 steps (A1111's default is 20, most Civitai recipes 25-30) where the
    # model's own PNDM needs the pipeline's default of 50.
    draw_steps=25,
    guidance=7.5,  # StableDiffusionPipeline's default guidance_scale
    max_steps=MAX_DRAW_STEPS,
    samplers=SD_SAMPLERS,
    # Not the model's own PNDM: users' prompts, step counts and expectations come from A1111/Civitai, where
    # DPM++ 2M Karras is the standard; at 25 steps it is sharper than PNDM at 25 and matches PNDM at 50.
    default_sampler="dpm++2m-karras",
    own_scheduler="PNDMScheduler",
    negative_prompt=True,
    prompt_tokens=CLIP_TOKEN_LIMIT,
    lora_targets=_SD_UNET_ATTENTION,
)

SD2 = replace(
    SD1,
    name="sd2",
    title="Stable Diffusion 2.x (512-base, epsilon)",
    # Same resolution, multiple and defaults as SD1: stable-diffusion-2-base is a 512² epsilon model.
    own_scheduler="PNDMScheduler",
    ss_base_model_version="sd_v2",  # sd-scripts' get_model_version_str_for_sd1_sd2(v2=True, v=False)
    ss_v2=True,
    modelspec_architecture="stable-diffusion-v2-512",
)

SD2_V = replace(
    SD2,
    name="sd2-v",
    title="Stable Diffusion 2.x (768-v, v-prediction)",
    loss="v_prediction",  # stable-diffusion-2(-1) at 768 predicts v (its scheduler's prediction_type)
    resolution=768,
    max_side=1536,
    own_scheduler="DDIMScheduler",
    ss_base_model_version="sd_v2_v",  # sd-scripts appends "_v" for v-parameterisation
    ss_v_parameterization=True,
    modelspec_architecture="stable-diffusion-v2-768-v",
)

SDXL = Family(
    name="sdxl",
    title="Stable Diffusion XL 1.0 (base)",
    pipeline="StableDiffusionXLPipeline",
    denoiser="unet",
    text_encoders=("text_encoder", "text_encoder_2"),
    loss="epsilon",
    resolution=1024,  # SDXL base's native size (UNet sample_size 128 × 8); the recipe's default --resolution
    # 64 gives exactly SDXL's official aspect buckets (1216x832, 1344x768, …) within its 1024² budget.
    multiple=64,
    max_side=2048,
    draw_steps=30,  # DPM++ 2M Karras; SDXL's finer detail wants a few more steps than SD1.x
    guidance=5.0,  # StableDiffusionXLPipeline's default guidance_scale
    max_steps=MAX_DRAW_STEPS,
    samplers=SD_SAMPLERS,
    default_sampler="dpm++2m-karras",
    own_scheduler="EulerDiscreteScheduler",
    negative_prompt=True,
    prompt_tokens=CLIP_TOKEN_LIMIT,
    lora_targets=_SD_UNET_ATTENTION,  # train_dreambooth_lora_sdxl.py's unet target_modules
    class_image_guidance=5.0,
    vae_fp16_overflows=True,  # the recipe keeps the VAE in fp32 unless a fixed VAE is given (README_sdxl.md)
    kohya_unet_names="sgm",  # sd-scripts trains SDXL on its own sgm UNet: lora_unet_input_blocks_4_1_…
    kohya_text_encoder_prefixes=("lora_te1", "lora_te2"),
    ss_base_model_version="sdxl_base_v1-0",  # sd-scripts' sdxl_model_util.MODEL_VERSION_SDXL_BASE_V1_0
    modelspec_architecture="stable-diffusion-xl-v1-base",
    modelspec_implementation="https://github.com/Stability-AI/generative-models",
)

# FLUX.1's attention projections, as train_dreambooth_lora_flux.py names them: the image stream (to_q/k/v/out),
# the text stream of the double blocks (add_q/k/v_proj, to_add_out); "attn.to_q" also matches the single blocks'
# attention. The recipe's default list adds the feed-forward layers; Kabina keeps LoRA on attention, like SD.
_FLUX_ATTENTION = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
)

FLUX_DEV = Family(
    name="flux-dev",
    title="FLUX.1-dev",
    pipeline="FluxPipeline",
    denoiser="transformer",
    text_encoders=("text_encoder", "text_encoder_2"),  # CLIP-L (pooled) and T5-XXL (sequence)
    loss="flow_matching",
    resolution=1024,  # FluxPipeline.default_sample_size 128 × VAE factor 8
    multiple=16,  # FluxPipeline needs sides divisible by vae_scale_factor × 2 (latents are packed 2x2)
    max_side=2048,
    draw_steps=28,  # FluxPipeline's default num_inference_steps
    guidance=3.5,  # FluxPipeline's default guidance_scale (dev is guidance-distilled: it is an embedding, not CFG)
    max_steps=50,
    samplers=FLUX_DEV_SAMPLERS,
    default_sampler="default",  # FlowMatchEulerDiscreteScheduler with the model's dynamic shift
    own_scheduler="FlowMatchEulerDiscreteScheduler",
    negative_prompt=False,  # FluxPipeline only uses one with true_cfg_scale > 1, which doubles the cost
    prompt_tokens=511,  # T5 reads max_sequence_length 512 positions, the last one </s>
    guidance_embedded=True,
    architecture="flux1",
    lora_targets=_FLUX_ATTENTION,
    text_encoder_lora_targets=(),
    # FLUX's 3072-wide attention holds more per rank than SD's 320-1280; README_flux.md trains at rank 16.
    rank_small_set=8,
    rank_large_set=16,
    class_images=100,  # the recipe's --num_class_images default: FLUX class images cost ~28 transformer steps each
    class_image_steps=28,
    class_image_guidance=3.5,
    class_image_sampler="default",
    # README_flux.md's commands pass --guidance_scale=1 for training dev (the script's own default is 3.5).
    train_guidance=1.0,
    weighting_scheme="none",  # the recipe's default: uniform timesteps, unweighted loss
    kohya_unet_names="onetrainer",
    kohya_text_encoder_prefixes=(),
    ss_base_model_version="flux1",  # sd-scripts' flux_utils.MODEL_VERSION_FLUX_V1
    modelspec_architecture="flux-1-dev",
    modelspec_implementation="https://github.com/black-forest-labs/flux",
)

FLUX_SCHNELL = replace(
    FLUX_DEV,
    name="flux-schnell",
    title="FLUX.1-schnell",
    draw_steps=4,  # schnell is timestep-distilled for 1-4 steps (FluxPipeline's schnell example: 4, guidance 0)
    guidance=0.0,  # no guidance embedding and no CFG
    samplers=FLUX_SCHNELL_SAMPLERS,
    prompt_tokens=255,  # diffusers' FLUX docs: schnell takes max_sequence_length up to 256
    guidance_embedded=False,
    class_image_steps=4,
    class_image_guidance=0.0,
    train_guidance=None,
    modelspec_architecture="flux-1-schnell",
)

# train_dreambooth_lora_flux2_klein.py's default targets: every attention projection of the image stream in the
# double blocks (to_q/k/v, to_out.0; "to_k" does not match the text stream's add_k_proj) and, in the single blocks,
# the fused qkv+MLP input projection and the attention output. A regex: the single blocks' `to_out` is a Linear
# while the double blocks' is a ModuleList, which a plain name would also match.
_FLUX2_TARGETS = r".*(\.to_q|\.to_k|\.to_v|\.to_out\.0|\.to_qkv_mlp_proj|single_transformer_blocks\.\d+\.attn\.to_out)$"

FLUX2_KLEIN = Family(
    name="flux2-klein",
    title="FLUX.2 [klein]",
    pipeline="Flux2KleinPipeline",
    denoiser="transformer",
    text_encoders=("text_encoder",),  # Qwen3 (4B for klein 4B, 8B for 9B): three hidden layers stacked
    loss="flow_matching",
    resolution=1024,  # Flux2KleinPipeline.default_sample_size 128 × VAE factor 8; README_flux2.md trains at 1024
    multiple=16,  # sides divisible by vae_scale_factor × 2 (latents are patchified 2x2)
    max_side=2048,
    # klein 4B/9B are step-distilled (model_index is_distilled): the model card draws in 4 steps without CFG.
    draw_steps=4,
    guidance=1.0,  # is_distilled ignores guidance; 1.0 says "no CFG" on the base variants too
    max_steps=50,
    samplers=FLUX_SCHNELL_SAMPLERS,  # the pipeline hands the scheduler sigmas and `mu`: the flow Euler sampler
    default_sampler="default",
    own_scheduler="FlowMatchEulerDiscreteScheduler",
    negative_prompt=False,  # the pipeline has no negative prompt (its CFG uses the empty prompt)
    prompt_tokens=512,  # Flux2KleinPipeline's max_sequence_length: the chat template's tokens plus the prompt's
    architecture="flux2",
    takes_references=True,
    lora_targets=(_FLUX2_TARGETS,),
    text_encoder_lora_targets=(),
    rank_small_set=8,  # like FLUX.1: a 3072-wide transformer holds more per rank than SD's UNet
    rank_large_set=16,
    class_images=100,  # PRIOR=class-images
    # Kabina's default prior: its step comes apart into noise and prediction (engine.flux2), so no class set is
    # drawn before a first training (100 pictures: 400 passes at klein's 4 steps, 5,600 at the base's 28 with CFG).
    prior="output",
    class_image_steps=4,
    class_image_guidance=1.0,
    train_guidance=None,  # no guidance embedding (README_flux2.md passes --guidance_scale=1, which it ignores)
    weighting_scheme="none",  # the recipe's default
    kohya_unet_names="bfl-flux2",
    kohya_text_encoder_prefixes=(),
    ss_base_model_version="flux2_klein",
    modelspec_architecture="flux-2-klein",
    modelspec_implementation="https://github.com/black-forest-labs/flux2",
)

# The undistilled "base" checkpoints (FLUX.2-klein-base-4B/9B): the pipeline's own 50 steps and CFG at 4.0.
FLUX2_KLEIN_BASE = replace(
    FLUX2_KLEIN,
    name="flux2-klein-base",
    title="FLUX.2 [klein] base",
    draw_steps=50,
    guidance=4.0,
    class_image_steps=28,
    class_image_guidance=4.0,
    modelspec_architecture="flux-2-klein-base",
)

# Z-Image (Tongyi-MAI, 6B, a Qwen3-4B text encoder; ZImagePipeline, train_dreambooth_lora_z_image.py).
Z_IMAGE = Family(
    name="z-image",
    title="Z-Image",
    pipeline="ZImagePipeline",
    denoiser="transformer",
    text_encoders=("text_encoder",),
    loss="flow_matching",
    resolution=1024,  # README_z_image.md trains at 1024; its VAE is FLUX.1's (sample_size 1024)
    multiple=16,  # VAE factor 8 × the transformer's 2x2 patches
    max_side=2048,
    draw_steps=50,  # ZImagePipeline's defaults: 50 steps, CFG 5.0 against the negative (or empty) prompt
    guidance=5.0,
    max_steps=50,
    samplers=FLUX_SCHNELL_SAMPLERS,
    default_sampler="default",
    own_scheduler="FlowMatchEulerDiscreteScheduler",
    negative_prompt=True,
    prompt_tokens=512,  # max_sequence_length, chat template included
    architecture="z-image",
    lora_targets=("to_k", "to_q", "to_v", "to_out.0"),  # the recipe's default target_modules
    text_encoder_lora_targets=(),
    rank_small_set=8,
    rank_large_set=16,
    class_images=100,  # PRIOR=class-images
    # Kabina's default prior: its step comes apart into noise and prediction (engine.z_image), so no class set of
    # 100 pictures × 28 steps × 2 for CFG (5,600 passes of a 6B transformer) is drawn before a first training.
    prior="output",
    class_image_steps=28,
    class_image_guidance=5.0,
    weighting_scheme="none",
    kohya_unet_names="diffusers-prefixed",
    kohya_text_encoder_prefixes=(),
    ss_base_model_version="z_image",
    modelspec_architecture="z-image",
    modelspec_implementation="https://github.com/Tongyi-MAI/Z-Image",
)

# Z-Image-Turbo: distilled for few steps without CFG (its model card: 9 steps, guidance 0).
Z_IMAGE_TURBO = replace(
    Z_IMAGE,
    name="z-image-turbo",
    title="Z-Image-Turbo",
    draw_steps=9,
    guidance=0.0,
    negative_prompt=False,  # without CFG the pipeline never reads one
    class_image_steps=9,
    class_image_guidance=0.0,
    modelspec_architecture="z-image-turbo",
)

# Qwen-Image (Qwen, a 20B MMDiT; a Qwen2.5-VL-7B text encoder, a 3D causal VAE; QwenImagePipeline,
# train_dreambooth_lora_qwen_image.py and README_qwen.md).
QWEN_IMAGE = Family(
    name="qwen-image",
    title="Qwen-Image",
    pipeline="QwenImagePipeline",
    denoiser="transformer",
    text_encoders=("text_encoder",),
    loss="flow_matching",
    resolution=1328,  # the model card's 1:1 size (1328x1328); its other sizes hold about as many pixels
    multiple=16,  # VAE factor 8 × the 2x2 packing (the pipeline's vae_scale_factor * 2)
    max_side=2048,
    draw_steps=50,  # the model card's num_inference_steps and true_cfg_scale, with negative_prompt " "
    guidance=4.0,
    max_steps=50,
    samplers=FLUX_SCHNELL_SAMPLERS,  # the pipeline hands the scheduler sigmas and `mu`: the flow Euler sampler
    default_sampler="default",
    own_scheduler="FlowMatchEulerDiscreteScheduler",
    negative_prompt=True,  # true CFG runs against it
    prompt_tokens=512,  # max_sequence_length after the system turn is dropped: the user turn and its closing tokens
    architecture="qwen-image",
    lora_targets=("to_k", "to_q", "to_v", "to_out.0"),  # the recipe's default target_modules
    text_encoder_lora_targets=(),
    rank_small_set=8,
    rank_large_set=16,
    class_images=100,  # the recipe's --num_class_images (PRIOR=class-images)
    # Kabina's default prior, not the recipe's class images: its step comes apart into noise and prediction
    # (engine.qwen_image), and 100 class pictures at 30 steps of true CFG are 6,000 passes of a 20B transformer.
    prior="output",
    train_resolution=1024,  # README_qwen.md trains at --resolution=1024 (0.6x the pixels of 1328²)
    class_image_steps=30,
    class_image_guidance=4.0,
    weighting_scheme="none",  # the recipe's default
    kohya_unet_names="diffusers-prefixed",  # ComfyUI's Qwen-Image modules carry the diffusers names
    kohya_text_encoder_prefixes=(),
    ss_base_model_version="qwen_image",
    modelspec_architecture="qwen-image",
    modelspec_implementation="https://github.com/QwenLM/Qwen-Image",
)

FAMILIES: dict[str, Family] = {f.name: f for f in (SD1, SD2, SD2_V, SDXL, FLUX_DEV, FLUX_SCHNELL, FLUX2_KLEIN,
                                                   FLUX2_KLEIN_BASE, Z_IMAGE, Z_IMAGE_TURBO, QWEN_IMAGE)}

SUPPORTED = ("SD1.x, SD2.x (512-base and 768-v), SDXL 1.0 base, FLUX.1-dev, FLUX.1-schnell, FLUX.2 [klein] "
             "(4B, 9B and their base variants), Z-Image, Z-Image-Turbo and Qwen-Image")


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}") from None


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


# What the bot reads for /draw, per family name (plain data: ints, floats, strings, lists).
FAMILY_LIMITS: dict[str, dict[str, Any]] = {name: family.limits() for name, family in FAMILIES.items()}
