"""The Stable Diffusion families: SD1.x, SD2.x (512-base epsilon and 768-v) and SDXL 1.0 base, UNet denoisers
trained by DDPM noising (engine.objectives); every default says where it comes from (engine.families)."""

from __future__ import annotations

from dataclasses import replace

from engine.families.base import CLIP_TOKEN_LIMIT, SD_SAMPLERS, Family
from storage.contract import MAX_DRAW_STEPS

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
