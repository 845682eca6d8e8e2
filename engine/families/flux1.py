"""FLUX.1-dev and FLUX.1-schnell: flow-matching transformers with CLIP-L and T5-XXL text encoders, their step in
engine.objectives; every default says where it comes from (engine.families)."""

from __future__ import annotations

from dataclasses import replace

from engine.families.base import FLUX_DEV_SAMPLERS, FLUX_SCHNELL_SAMPLERS, Family

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
