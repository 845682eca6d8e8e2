"""Tiny random pipelines of SD2.x, SDXL and FLUX.1 (and SD1.x with CLIP's real vocabulary), built offline for tests.

Each is shaped like its family (the same components, conditioning and config switches) at toy widths, and
follows the conventions engine/single_file.py reads shapes by, so its original-layout single file loads with no
extra files. The SD families use CLIP's real tokenizer (so prompt lengths, padding and the identifier pool are the
real ones); FLUX's T5 tokenizer is a small unigram vocabulary built here with the `tokenizers` library.
Their pictures are noise.
"""

from __future__ import annotations

from pathlib import Path

from engine.families import get_family
from engine.single_file import (
    family_tokenizers,
    text_attention_heads,
    unet_attention_heads,
    unet_norm_groups,
    vae_norm_groups,
)
from engine.tiny_common import NOTICE, TINY_RESOLUTION
from engine.tokens import COMMON_PROMPT_WORDS, IDENTIFIER_POOL

FAMILY_CHOICES = ("sd1", "sd1-clip", "sd2", "sd2-base", "sdxl", "flux", "flux-schnell", "flux2-klein", "z-image",
                  "z-image-turbo", "qwen-image")
# CLI names → family names ("sd2" is the 768-v v-prediction variant: the one whose loss differs from SD1's).
CLI_FAMILIES = {"sd1": "sd1", "sd1-clip": "sd1", "sd2": "sd2-v", "sd2-base": "sd2", "sdxl": "sdxl",
                "flux": "flux-dev", "flux-schnell": "flux-schnell", "flux2-klein": "flux2-klein",
                "z-image": "z-image", "z-image-turbo": "z-image-turbo",  # Turbo: its folder's name says so
                "qwen-image": "qwen-image"}

UNET_CHANNELS = (32, 64)
VAE_CHANNELS = (16, 32, 32)  # three blocks: latents a quarter of the picture's side, cheap CPU attention


def _clip_text_config(tokenizer, hidden: int, act: str, projection: int | None = None):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=text_attention_heads(hidden), max_position_embeddings=77,
        projection_dim=projection or hidden, hidden_act=act,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,  # CLIP pools at the eos id
        pad_token_id=tokenizer.pad_token_id,
    )


def _tiny_vae(scaling_factor: float, *, shift_factor: float | None = None, quant_conv: bool = True,
              force_upcast: bool = True):
    import torch
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=VAE_CHANNELS,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4, layers_per_block=1, norm_num_groups=vae_norm_groups(VAE_CHANNELS[0]),
        sample_size=TINY_RESOLUTION, scaling_factor=scaling_factor, shift_factor=shift_factor,
        use_quant_conv=quant_conv, use_post_quant_conv=quant_conv, force_upcast=force_upcast,
    )
    # A random encoder's log-variance is large enough to drown the mean; pin it near zero variance so latents
    # (and the pictures decoded from them) carry the picture rather than sampling noise.
    last = vae.quant_conv if quant_conv else vae.encoder.conv_out
    half = vae.config.latent_channels
    with torch.no_grad():
        last.weight[half:].zero_()
        last.bias[half:].fill_(-30.0)
    return vae


def _tiny_unet(family_name: str, cross_attention_dim: int, **extra):
    from diffusers import UNet2DConditionModel

    heads = [unet_attention_heads(family_name, c) for c in UNET_CHANNELS]
    return UNet2DConditionModel(
        sample_size=TINY_RESOLUTION // 4, in_channels=4, out_channels=4, block_out_channels=UNET_CHANNELS,
        layers_per_block=1, cross_attention_dim=cross_attention_dim,
        attention_head_dim=heads[0] if family_name == "sd1" else heads,
        norm_num_groups=unet_norm_groups(UNET_CHANNELS[0]), **extra,
    )


def _sd_scheduler(family_name: str):
    from diffusers import DDIMScheduler, EulerDiscreteScheduler, PNDMScheduler

    common = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                  steps_offset=1)
    if family_name == "sd2-v":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=False, prediction_type="v_prediction")
    if family_name == "sdxl":
        return EulerDiscreteScheduler(**common, timestep_spacing="leading", prediction_type="epsilon")
    return PNDMScheduler(**common, skip_prk_steps=True, set_alpha_to_one=False, prediction_type="epsilon")


def _build_sd(family_name: str):
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextModel

    tokenizer = family_tokenizers(get_family(family_name))["tokenizer"]
    openclip = family_name != "sd1"
    text_encoder = CLIPTextModel(_clip_text_config(tokenizer, 32, "gelu" if openclip else "quick_gelu"))
    unet = _tiny_unet(family_name, 32, use_linear_projection=openclip,
                      down_block_types=("CrossAttnDownBlock2D",) * 2, up_block_types=("CrossAttnUpBlock2D",) * 2)
    return StableDiffusionPipeline(
        vae=_tiny_vae(0.18215, force_upcast=False), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=_sd_scheduler(family_name), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )


def _build_sdxl():
    from diffusers import StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizers = family_tokenizers(get_family("sdxl"))
    text_encoder = CLIPTextModel(_clip_text_config(tokenizers["tokenizer"], 32, "quick_gelu"))
    # The second encoder is wider than the first (as OpenCLIP bigG is than CLIP-L): single-file loading tells
    # the two apart by width, and the UNet reads both side by side (32 + 64 = 96 channels of context).
    text_encoder_2 = CLIPTextModelWithProjection(_clip_text_config(tokenizers["tokenizer_2"], 64, "gelu", projection=32))
    time_dim = 8
    unet = _tiny_unet(
        "sdxl", 32 + 64, use_linear_projection=True,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time", addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=32 + 6 * time_dim,  # pooled text + (original, crop, target) sizes
    )
    return StableDiffusionXLPipeline(
        vae=_tiny_vae(0.13025, force_upcast=True), text_encoder=text_encoder, text_encoder_2=text_encoder_2,
        tokenizer=tokenizers["tokenizer"], tokenizer_2=tokenizers["tokenizer_2"], unet=unet,
        scheduler=_sd_scheduler("sdxl"), force_zeros_for_empty_prompt=True,
    )


def tiny_t5_tokenizer(words=None):
    """A T5-style unigram tokenizer (▁-prefixed words, </s> appended, <pad> = 0) over a small word list."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    words = sorted(set(words or (*IDENTIFIER_POOL, *COMMON_PROMPT_WORDS)))
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    pieces += [("▁" + w, -1.0) for w in words]
    pieces += [(c, -6.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"]
    model = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    model.normalizer = normalizers.NFKC()
    model.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    model.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    model.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                         special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=model, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                           extra_ids=0, model_max_length=512)


def _build_flux(family_name: str):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    dev = family_name == "flux-dev"
    tokenizer = family_tokenizers(get_family("sd1"))["tokenizer"]  # FLUX's CLIP-L pads like SD1's
    text_encoder = CLIPTextModel(_clip_text_config(tokenizer, 32, "quick_gelu"))
    tokenizer_2 = tiny_t5_tokenizer()
    text_encoder_2 = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer_2), d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2,
        feed_forward_proj="gated-gelu", relative_attention_num_buckets=8, relative_attention_max_distance=32,
        pad_token_id=tokenizer_2.pad_token_id, eos_token_id=tokenizer_2.eos_token_id, decoder_start_token_id=0,
        is_encoder_decoder=False, use_cache=False,
    ))
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=dev,
        axes_dims_rope=(4, 6, 6),
    )
    vae = _tiny_vae(0.3611, shift_factor=0.1159, quant_conv=False)
    if dev:
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                                    base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                                    max_image_seq_len=4096)
    else:
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)
    return FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer)


def build_tiny_family(folder: str | Path, family: str, seed: int = 0):
    """Write a tiny pipeline of a CLI family name (FAMILY_CHOICES) into `folder` and return it."""
    import torch

    if family not in CLI_FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILY_CHOICES)}")
    name = CLI_FAMILIES[family]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if name in ("sd1", "sd2", "sd2-v"):
        pipe = _build_sd(name)
    elif name == "sdxl":
        pipe = _build_sdxl()
    elif name == "flux2-klein":
        from engine.tiny_flux2 import build_tiny_flux2_klein

        pipe = build_tiny_flux2_klein(TINY_RESOLUTION)
    elif name in ("z-image", "z-image-turbo"):
        from engine.tiny_flux2 import build_tiny_z_image

        pipe = build_tiny_z_image(_tiny_vae(0.3611, shift_factor=0.1159, quant_conv=False))
    elif name == "qwen-image":
        from engine.tiny_flux2 import build_tiny_qwen_image

        pipe = build_tiny_qwen_image(TINY_RESOLUTION)
    else:
        pipe = _build_flux(name)
    pipe.save_pretrained(str(folder))
    (folder / "README.txt").write_text(NOTICE, encoding="utf-8")
    return pipe


def build_random_family(family_name: str, device, dtype):
    """A full-size pipeline of a family with random weights, in memory, from its config folder (engine/configs).

    For speed and memory figures on a GPU (a step costs the same whatever the weights are); nothing is read from
    or written to disk but the configs. The SD families get CLIP's real tokenizer, FLUX's T5 our small one (its
    ids fit T5's 32,128-token embedding; the cost of a step does not depend on which ids they are).
    """
    import diffusers
    import torch
    import transformers

    from engine.base_model import CONFIGS_DIR
    from engine.single_file import TEMPLATES

    family = get_family(family_name)
    folder = CONFIGS_DIR / TEMPLATES[family.name]
    index = diffusers.DiffusionPipeline.load_config(str(folder))
    components: dict = {}
    if family.architecture in ("flux2", "z-image"):
        from engine.tiny_flux2 import tiny_qwen_tokenizer

        components["tokenizer"] = tiny_qwen_tokenizer()  # its ids fit Qwen3's 151,936-token embedding
    elif family.architecture == "qwen-image":
        from engine.tiny_flux2 import tiny_qwen_image_tokenizer

        # Its ids fit Qwen2.5-VL's 152,064-token embedding; its system turn is 34 tokens, as the pipeline drops.
        components["tokenizer"] = tiny_qwen_image_tokenizer()
    elif family.is_flux:
        components["tokenizer"] = family_tokenizers(get_family("sd1"))["tokenizer"]
        components["tokenizer_2"] = tiny_t5_tokenizer()
    else:
        components.update(family_tokenizers(family))
    for name, value in index.items():  # schedulers first, in fp32 and on the CPU, as diffusers keeps them
        if isinstance(value, list) and value[0] == "diffusers" and issubclass(getattr(diffusers, value[1]),
                                                                           diffusers.SchedulerMixin):
            cls = getattr(diffusers, value[1])
            components[name] = cls.from_config(cls.load_config(str(folder / name)))
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise in the target dtype: FLUX's 12B transformer would need 48 GB in fp32
    try:
        _instantiate(index, folder, components, device, diffusers, transformers)
    finally:
        torch.set_default_dtype(default_dtype)
    pipeline_class = getattr(diffusers, family.pipeline)
    extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False} \
        if family.pipeline == "StableDiffusionPipeline" else {}
    if "is_distilled" in index:
        extra["is_distilled"] = family.name == "flux2-klein"
    pipe = pipeline_class(**components, **extra).to(device=device, dtype=dtype)
    pipe._kabina_family = family.name
    if family.denoiser == "transformer":
        pipe.unet = pipe.transformer  # as engine.base_model.load_base_pipeline does
    return pipe


def _instantiate(index, folder: Path, components: dict, device, diffusers, transformers) -> None:
    import torch

    with torch.device(device):
        for name, value in index.items():
            if name.startswith("_") or name in components or not isinstance(value, list) or value[0] is None:
                continue
            library, class_name = value
            cls = getattr(diffusers if library == "diffusers" else transformers, class_name)
            if issubclass(cls, diffusers.ModelMixin):
                components[name] = cls.from_config(cls.load_config(str(folder / name)))
            else:
                components[name] = cls(cls.config_class.from_pretrained(str(folder / name)))
