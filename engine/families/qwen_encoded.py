"""The Qwen-encoded families: FLUX.2 [klein] (and its base variants), Z-Image (and Z-Image-Turbo) and Qwen-Image,
flow-matching transformers read by a Qwen text encoder, whose conditioning and step live in their own modules
(engine.flux2, engine.z_image, engine.qwen_image); every default says where it comes from (engine.families)."""

from __future__ import annotations

from dataclasses import replace

from engine.families.base import FLUX_SCHNELL_SAMPLERS, Family

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
