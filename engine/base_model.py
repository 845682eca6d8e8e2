"""Loading the base Stable Diffusion model offline and choosing device, dtype and attention kernels."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONFIGS_DIR = Path(__file__).with_name("configs")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt")


class BaseModelError(Exception):
    """The base model is missing or cannot be loaded; the message says what to put where."""


@dataclass(frozen=True)
class Runtime:
    device: Any  # torch.device
    dtype: Any  # torch.dtype used for the frozen weights
    attention: str  # "xformers" | "sdpa"

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"


def pick_runtime(device_setting: str = "auto") -> Runtime:
    """CUDA when present (bf16 where the GPU supports it, else fp16), otherwise CPU in fp32."""
    import torch

    setting = (device_setting or "auto").lower()
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(setting)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BaseModelError(f"DEVICE={device_setting} but no CUDA GPU is visible")
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        attention = "xformers" if _has_xformers() else "sdpa"
    else:
        dtype, attention = torch.float32, "sdpa"
    return Runtime(device=device, dtype=dtype, attention=attention)


def _has_xformers() -> bool:
    try:
        import xformers  # noqa: F401
    except Exception:
        return False
    return True


def _offline() -> None:
    # Nothing the engine does may reach the network; make the libraries fail fast instead of trying.
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(name, "1")


def single_file_config_dir(checkpoint: Path) -> Path:
    """The diffusers config folder (with tokenizer/) a single-file checkpoint is read with, offline.

    Looked up in order: a folder named like the checkpoint beside it (`sd15.safetensors` + `sd15/`), the
    checkpoint's own folder when it holds `model_index.json`, then engine/configs/sd15 if a tokenizer was put
    there (SD1.5 checkpoints carry no tokenizer; copy vocab.json and merges.txt of openai/clip-vit-large-patch14
    into engine/configs/sd15/tokenizer/).
    """
    candidates = [checkpoint.with_suffix(""), checkpoint.parent, CONFIGS_DIR / "sd15"]
    for folder in candidates:
        if (folder / "model_index.json").is_file() and any((folder / "tokenizer").glob("*.json")):
            return folder
    raise BaseModelError(
        f"{checkpoint.name} is a single-file checkpoint; put its diffusers config folder (with tokenizer/) "
        f"beside it as {checkpoint.with_suffix('').name}/, or add the CLIP tokenizer files to "
        f"{CONFIGS_DIR / 'sd15' / 'tokenizer'}"
    )


def load_base_pipeline(path: str | Path, runtime: Runtime):
    """A StableDiffusionPipeline from a diffusers folder or a single .safetensors file, on runtime's device."""
    _offline()
    from diffusers import StableDiffusionPipeline

    path = Path(path).expanduser()
    common: dict[str, Any] = {
        "torch_dtype": runtime.dtype,
        "safety_checker": None,
        "requires_safety_checker": False,
        "local_files_only": True,
    }
    try:
        if path.is_dir():
            if not (path / "model_index.json").is_file():
                raise BaseModelError(f"{path} has no model_index.json; BASE_MODEL must be a diffusers folder")
            pipe = StableDiffusionPipeline.from_pretrained(str(path), **common)
        elif path.is_file() and path.suffix in WEIGHT_SUFFIXES:
            config = single_file_config_dir(path)
            pipe = StableDiffusionPipeline.from_single_file(str(path), config=str(config), **common)
        else:
            raise BaseModelError(f"BASE_MODEL {path} is neither a diffusers folder nor a .safetensors file")
    except BaseModelError:
        raise
    except Exception as exc:
        raise BaseModelError(f"cannot load the base model from {path}: {exc}") from exc
    pipe.to(runtime.device)
    pipe.set_progress_bar_config(disable=True)
    use_fast_attention(pipe, runtime)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)
        module.eval()
    return pipe


def use_fast_attention(pipe, runtime: Runtime) -> None:
    """xformers on CUDA when installed; PyTorch's SDPA otherwise (diffusers' default processor)."""
    if runtime.attention == "xformers":
        try:
            pipe.enable_xformers_memory_efficient_attention()
            return
        except Exception as exc:  # an xformers wheel built for another torch: SDPA still works
            log.warning("xformers unusable (%s); using PyTorch SDPA", exc)
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipe.unet.set_attn_processor(AttnProcessor2_0())


def base_model_key(path: str | Path) -> str:
    """Identifies a base model for caches: its location and the size and time of each weight file."""
    path = Path(path).expanduser().resolve()
    h = hashlib.sha256(str(path).encode())
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    for file in files:
        if file.is_file() and (file.suffix in WEIGHT_SUFFIXES or file.name.endswith("config.json")):
            stat = file.stat()
            h.update(f"{file.relative_to(path.parent)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def training_resolution(pipe) -> int:
    """The image size the UNet was trained for (512 for SD1.x; 64 for the tiny model)."""
    return int(pipe.unet.config.sample_size) * pipe.vae_scale_factor


def describe(runtime: Runtime) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"device": str(runtime.device), "dtype": str(runtime.dtype).replace("torch.", "")}
    if runtime.is_cuda:
        info["gpu"] = torch.cuda.get_device_name(runtime.device)
    info["attention"] = runtime.attention
    return info


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
