"""Loading the base model offline as its family's pipeline, and choosing device, dtype and attention kernels."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.detection import detect, family_of, flux_components
from engine.model_files import CONFIGS_DIR as CONFIGS_DIR  # callers know these names from here
from engine.model_files import BaseModelError, read_json
from engine.model_files import UnsupportedModel as UnsupportedModel
from engine.single_file import load_single_file

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt")
# Bump when the way class images are drawn changes without any setting changing: old caches are then not reused.
CLASS_IMAGE_RECIPE = 2


@dataclass(frozen=True)
class Runtime:
    device: Any  # torch.device
    dtype: Any  # torch.dtype used for the frozen weights
    attention: str  # "xformers" | "sdpa"

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"


def pick_runtime(device_setting: str = "auto") -> Runtime:
    """CUDA when present (bf16 where the GPU has it natively, else fp16), otherwise CPU in fp32."""
    import torch

    setting = (device_setting or "auto").lower()
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
        if setting == "cpu" and torch.version.cuda:
            # A CUDA build of torch that sees no GPU: a driver older than the wheel's CUDA, or no GPU passed in.
            log.warning("DEVICE=auto runs on the CPU: %s", _no_gpu_reason(torch))
    device = torch.device(setting)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BaseModelError(f"DEVICE={device_setting} but no CUDA GPU is visible: {_no_gpu_reason(torch)}")
        # Plain is_bf16_supported() also says yes where bf16 is only emulated (pre-Ampere, e.g. a T4), which runs
        # several times slower than fp16 there; fp16 then, with the VAE kept in fp32 where it overflows.
        dtype = torch.bfloat16 if _native_bf16(device) else torch.float16
        # TF32 matmuls and convolutions on Ampere and newer: what the diffusers recipes' --allow_tf32 turns on.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        # PyTorch's own SDPA (flash / memory-efficient kernels), even where xformers is installed: on torch >= 2 it
        # is as fast for these shapes (diffusers' own advice) and has no wheel of its own to keep matched. A Runtime
        # built with attention="xformers" still gets it (use_fast_attention).
        attention = "sdpa"
    else:
        dtype, attention = torch.float32, "sdpa"
    return Runtime(device=device, dtype=dtype, attention=attention)


def _no_gpu_reason(torch: Any) -> str:
    """Why torch sees no GPU, in the operator's terms (the wheel's CUDA against the host's driver)."""
    if not torch.version.cuda:
        return f"this torch ({torch.__version__}) is a CPU-only build; install the CUDA build (README)"
    return (f"torch {torch.__version__} is built for CUDA {torch.version.cuda}, which needs an NVIDIA driver that "
            "supports it (nvidia-smi shows the driver's CUDA version) and, in Docker, the GPU passed to the container")


def autocast(runtime: Runtime):
    """Mixed precision where the runtime has it (CUDA in bf16/fp16); nothing on a CPU in fp32."""
    import contextlib

    import torch

    if runtime.is_cuda and runtime.dtype != torch.float32:
        return torch.autocast("cuda", dtype=runtime.dtype)
    return contextlib.nullcontext()


def _native_bf16(device) -> bool:
    import torch

    try:
        with torch.cuda.device(device):
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch before 2.3 has no including_emulation: its answer was the native one
        return bool(torch.cuda.is_bf16_supported())


def _offline() -> None:
    # Nothing the engine does may reach the network; make the libraries fail fast instead of trying.
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(name, "1")


def load_base_pipeline(path: str | Path, runtime: Runtime, *, vae: str | Path | None = None):
    """The family's diffusers pipeline from a diffusers folder or a single .safetensors file, on runtime's device.

    The family is detected first (engine.detection): an unsupported model is refused here with one line, never at
    the first job. `vae` replaces the model's VAE with another diffusers VAE folder (or single file), e.g. SDXL's
    fp16-fix VAE, which needs no fp32 upcast. The family is recorded on the pipeline (`family_of(pipe)`).
    """
    _offline()
    import diffusers

    path = Path(path).expanduser()
    detection = detect(path)
    family = detection.family
    if detection.source == "single-file" and family.architecture == "flux1":
        flux_components(path, family)  # a transformer file with nothing beside it: refused before anything loads
    dtype = _dtype_for(family, runtime)
    pipeline_class = getattr(diffusers, family.pipeline)
    common: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
    if family.pipeline == "StableDiffusionPipeline":
        common.update(safety_checker=None, requires_safety_checker=False)
    try:
        if detection.source == "folder":
            pipe = pipeline_class.from_pretrained(str(path), **common)
        elif family.architecture == "flux1":
            from engine.flux_single_file import load_flux_single_file

            pipe = load_flux_single_file(pipeline_class, path, detection, common)
        else:
            pipe = load_single_file(pipeline_class, path, detection, common)
        if vae is not None:
            pipe.vae = _load_vae(Path(vae).expanduser(), dtype)
    except BaseModelError:
        raise
    except Exception as exc:
        raise BaseModelError(f"cannot load the {family.title} model from {path}: {exc}") from exc
    pipe._kabina_family = family.name
    pipe._kabina_source = detection.source
    if family.denoiser == "transformer":
        # engine/worker.py (being rewritten; not ours to edit) reaches the trained module as `pipe.unet` when it
        # steps a training aside for a draw. For FLUX that module is the transformer: name it so there too.
        # Everything else here asks family_of(pipe).denoiser; diffusers never reads this attribute.
        pipe.unet = pipe.transformer
    prepare_pipeline(pipe, runtime)
    return pipe


def _dtype_for(family, runtime: Runtime):
    import torch

    if family.is_flux and runtime.dtype == torch.float16:
        # FLUX's activations overflow fp16 (its transformers and text encoders were trained in bf16).
        raise BaseModelError(f"{family.title} needs bfloat16, which this GPU lacks; use an Ampere or newer GPU")
    return runtime.dtype


def _load_vae(vae: Path, dtype):
    from diffusers import AutoencoderKL

    if vae.is_dir():
        return AutoencoderKL.from_pretrained(str(vae), dtype=dtype, local_files_only=True)
    return AutoencoderKL.from_single_file(str(vae), dtype=dtype, local_files_only=True)


def prepare_pipeline(pipe, runtime: Runtime) -> None:
    """On the device, quiet, fast attention, every weight frozen and in eval mode."""
    pipe.to(runtime.device)
    if not runtime.is_cuda:
        own_memory(pipe)
    pipe.set_progress_bar_config(disable=True)
    use_fast_attention(pipe, runtime)
    for module in pipeline_modules(pipe):
        module.requires_grad_(False)
        module.eval()


def own_memory(pipe) -> None:
    """Every CPU weight copied out of the file it was memory-mapped from, into an allocation of its own.

    A mapped weight lies at whatever offset its file's header gave it, and the CPU's matmul kernels round
    differently by alignment: the same weights loaded from a diffusers folder and from a single file drew pictures
    a pixel apart. A torch allocation is always aligned alike. (On CUDA, moving to the device already copies.)
    """
    for module in pipeline_modules(pipe):
        for tensor in (*module.parameters(), *module.buffers()):
            tensor.data = tensor.data.clone()


def pipeline_modules(pipe) -> list:
    """The pipeline's torch modules, each once (FLUX's `unet` alias is its transformer)."""
    names = ("transformer", "unet", "vae", "text_encoder", "text_encoder_2")
    found: list = []
    for module in (getattr(pipe, n, None) for n in names):
        if module is not None and all(module is not m for m in found):
            found.append(module)
    return found


def has_lora(pipe) -> bool:
    return any(getattr(m, "peft_config", None) for m in pipeline_modules(pipe))


def remove_lora(pipe) -> None:
    """Take every LoRA out of the pipeline: the base model again, bit for bit."""
    if has_lora(pipe):
        pipe.unload_lora_weights()


def use_fast_attention(pipe, runtime: Runtime) -> None:
    """xformers on CUDA when installed (UNet families); PyTorch's SDPA otherwise (diffusers' default processors).

    FLUX keeps its own processor: it applies rotary embeddings inside attention and already calls SDPA.
    """
    if family_of(pipe).denoiser != "unet":
        return
    unet = pipe.unet
    if runtime.attention == "xformers":
        try:
            pipe.enable_xformers_memory_efficient_attention()
            return
        except Exception as exc:  # an xformers wheel built for another torch: SDPA still works
            log.warning("xformers unusable (%s); using PyTorch SDPA", exc)
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet.set_attn_processor(AttnProcessor2_0())


def base_model_key(path: str | Path, *, class_steps: int | None = None, class_guidance: float | None = None,
                   class_sampler: str | None = None) -> str:
    """Identifies a base model for caches by its content: configs, a weights digest, family and class-image recipe.

    The class-image cache (storage's class_images_prefix(key, prompt, resolution)) and the report card's "before"
    pictures are keyed by this string, so two models, two schedulers of one model, or two ways of drawing class
    images never share pictures, while the same model copied to another folder or host (other path, other file
    times) finds the cache it already filled. The sampling settings default to the family's.
    """
    path = Path(path).expanduser().resolve()
    detection = detect(path)
    family = detection.family
    h = hashlib.sha256(b"kabina-base-model-key-2")
    scheduler = {}
    if path.is_dir():
        # Names relative to the model's own folder (a single file is known by its content alone).
        files = [(file.relative_to(path).as_posix(), file) for file in sorted(path.rglob("*")) if file.is_file()]
        scheduler = read_json(path / "scheduler" / "scheduler_config.json")
    elif family.architecture == "flux1":
        # A FLUX.1 transformer file draws with the components folder beside it: both are the model.
        from engine.flux_single_file import key_files, scheduler_config

        files = key_files(path, detection)
        scheduler = scheduler_config(flux_components(path, family), family.name)
    else:
        files = [("", path)]
    for name, file in files:
        if file.suffix in WEIGHT_SUFFIXES:
            h.update(f"{name}:".encode())
            h.update(weights_digest(file).encode())
        elif file.suffix == ".json" or file.suffix == ".txt":  # configs, tokenizer vocabularies and merges
            h.update(f"{name}:".encode())
            h.update(file.read_bytes())
    recipe = {
        "family": family.name,
        "prediction_type": detection.prediction_type or scheduler.get("prediction_type"),
        "scheduler": scheduler,
        "class_steps": class_steps if class_steps is not None else family.class_image_steps,
        "class_guidance": class_guidance if class_guidance is not None else family.class_image_guidance,
        "class_sampler": class_sampler or family.class_image_sampler,
        "recipe": CLASS_IMAGE_RECIPE,
    }
    h.update(json.dumps(recipe, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


# A weights file is known by its size, its first DIGEST_HEAD bytes (a safetensors header names every tensor, its
# shape and dtype) and DIGEST_SAMPLES blocks spread over the rest: two different fine-tunes differ in every block,
# and a 24 GB FLUX model is read in milliseconds rather than the ~15 s a full SHA-256 would take at each start.
DIGEST_HEAD = 1 << 20
DIGEST_SAMPLES = 32
DIGEST_BLOCK = 1 << 16


def weights_digest(file: Path) -> str:
    size = file.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with file.open("rb") as f:
        if size <= DIGEST_HEAD + DIGEST_SAMPLES * DIGEST_BLOCK:
            h.update(f.read())
        else:
            h.update(f.read(DIGEST_HEAD))
            stride = (size - DIGEST_HEAD - DIGEST_BLOCK) // (DIGEST_SAMPLES - 1)
            for i in range(DIGEST_SAMPLES):  # the last block is the file's very end
                f.seek(size - DIGEST_BLOCK if i == DIGEST_SAMPLES - 1 else DIGEST_HEAD + i * stride)
                h.update(f.read(DIGEST_BLOCK))
    return h.hexdigest()


def training_resolution(pipe) -> int:
    """The image size the model was trained for (512 SD1.x, 768 SD2-v, 1024 SDXL/FLUX; 64 for the tiny models)."""
    if family_of(pipe).denoiser == "unet":
        return int(pipe.unet.config.sample_size) * pipe.vae_scale_factor
    # FLUX's transformer has no sample size; its VAE config records the native one (1024 for FLUX.1). Qwen-Image's
    # 3D VAE records none: its family's side is the native one (the tiny model writes its own into the VAE config).
    return int(getattr(pipe.vae.config, "sample_size", None) or family_of(pipe).resolution)


def train_resolution(pipe, setting: int | str | None = None) -> int:
    """The side a LoRA trains at: TRAIN_RESOLUTION (a number, or "native"), else the family's choice, else native.

    A family's choice is scaled by the model's own size (the tiny test models are 64 px where the real ones are
    1024), so a 512-px default for a 1024-px family trains a tiny model at half its side too.
    """
    from engine.detection import family_of

    native = training_resolution(pipe)
    if setting == "native":
        return native
    if setting:
        return int(setting)
    chosen = family_of(pipe).train_resolution
    if not chosen:
        return native
    family_native = family_of(pipe).resolution
    side = native * chosen // family_native
    if family_of(pipe).denoiser == "unet":
        return max(8, side)
    grid = pipe.vae_scale_factor * 2  # a transformer's latents are packed 2x2: the side stays on its grid
    return max(grid, side - side % grid)


def describe(runtime: Runtime) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"device": str(runtime.device), "dtype": str(runtime.dtype).replace("torch.", "")}
    if runtime.is_cuda:
        info["gpu"] = torch.cuda.get_device_name(runtime.device)
    info["attention"] = runtime.attention
    return info

