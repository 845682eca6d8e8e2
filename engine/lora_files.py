"""LoRA files of every family: the diffusers .safetensors, the kohya/A1111/ComfyUI copy, and training checkpoints."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.files import atomic_dir, write_atomic, write_atomic_with

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
ADAPTER = "kabina_training"


def adapter_state(module, adapter: str = ADAPTER) -> dict[str, Any]:
    """The LoRA tensors of one adapter as PEFT names them (`…to_q.lora_A.weight`), detached on the CPU."""
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(module, adapter_name=adapter)
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def adapter_metadata(module, adapter: str = ADAPTER) -> dict[str, Any]:
    config = module.peft_config[adapter].to_dict()
    # Sets are not JSON; diffusers rebuilds the LoraConfig (rank and alpha) from this on load.
    return {k: (sorted(v) if isinstance(v, set) else v) for k, v in config.items()}


def save_diffusers_lora(target: Path, unet, text_encoder=None, adapter: str = ADAPTER) -> Path:
    """An SD1.x/SD2.x UNet (and text-encoder) LoRA from bare modules, in the layout `load_lora_weights` reads.

    Training uses save_lora(target, pipe), which knows every family; this stays for callers with modules only.
    """
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    target = Path(target)
    unet_layers = convert_state_dict_to_diffusers(adapter_state(unet, adapter))
    te_layers = te_meta = None
    if text_encoder is not None and adapter in getattr(text_encoder, "peft_config", {}):
        te_layers = convert_state_dict_to_diffusers(adapter_state(text_encoder, adapter))
        te_meta = adapter_metadata(text_encoder, adapter)
    return write_atomic_with(target, lambda tmp: StableDiffusionPipeline.save_lora_weights(
        tmp.parent,
        unet_lora_layers=unet_layers,
        text_encoder_lora_layers=te_layers,
        weight_name=tmp.name,
        unet_lora_adapter_metadata=adapter_metadata(unet, adapter),
        text_encoder_lora_adapter_metadata=te_meta,
    ))


def save_lora(target: Path, pipe, adapter: str = ADAPTER) -> Path:
    """The trained adapter of any family in the layout its pipeline's `load_lora_weights(target)` reads.

    SD1/SD2/SDXL follow their recipes (UNet layers converted to diffusers' names, text encoders as PEFT keys);
    FLUX follows train_dreambooth_lora_flux.py (the transformer's PEFT state as it is). Each part carries its
    LoraConfig (rank and alpha) as metadata, so diffusers rebuilds the same scale on load.
    """
    import diffusers
    from diffusers.utils import convert_state_dict_to_diffusers

    from engine.detection import family_of

    family = family_of(pipe)
    target = Path(target)
    model = getattr(pipe, family.denoiser)
    layers: dict[str, Any] = {}
    if family.is_flux:
        # train_dreambooth_lora_flux.py saves in the weights' dtype (bf16 on a GPU; --upcast_before_saving is off
        # by default): half the file, and what FLUX LoRAs in the wild are. The SD recipes upcast to fp32 first.
        layers["transformer_lora_layers"] = {k: v.to(model.dtype) for k, v in adapter_state(model, adapter).items()}
        layers["transformer_lora_adapter_metadata"] = adapter_metadata(model, adapter)
    else:
        layers["unet_lora_layers"] = convert_state_dict_to_diffusers(adapter_state(model, adapter))
        layers["unet_lora_adapter_metadata"] = adapter_metadata(model, adapter)
        for name in family.text_encoders:
            encoder = getattr(pipe, name)
            if adapter in (getattr(encoder, "peft_config", None) or {}):
                layers[f"{name}_lora_layers"] = convert_state_dict_to_diffusers(adapter_state(encoder, adapter))
                layers[f"{name}_lora_adapter_metadata"] = adapter_metadata(encoder, adapter)
    pipeline_class = getattr(diffusers, family.pipeline)
    return write_atomic_with(target, lambda tmp: pipeline_class.save_lora_weights(
        tmp.parent, weight_name=tmp.name, **layers))


def save_kohya_lora(target: Path, pipe, adapter: str = ADAPTER, resolution: int | None = None) -> Path:
    """The same LoRA in the key layout of kohya's sd-scripts / ComfyUI (engine.lora_export), with ss_* metadata."""
    from safetensors.torch import save_file

    from engine.base_model import training_resolution
    from engine.detection import family_of
    from engine.lora_export import kohya_layout, kohya_metadata

    family = family_of(pipe)
    target = Path(target)
    model = getattr(pipe, family.denoiser)
    config = model.peft_config[adapter]
    encoders = []
    for name in family.text_encoders:
        encoder = getattr(pipe, name)
        if adapter in (getattr(encoder, "peft_config", None) or {}):
            encoders.append((adapter_state(encoder, adapter), encoder.peft_config[adapter].lora_alpha))
    state = kohya_layout(family, adapter_state(model, adapter), config.lora_alpha, model.config, encoders)
    metadata = kohya_metadata(family, config.r, config.lora_alpha, resolution or training_resolution(pipe))
    return write_atomic_with(target, lambda tmp: save_file(state, str(tmp), metadata=metadata))


# --- checkpoints -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    step: int
    total: int
    folder: Path
    signature: str


def save_checkpoint(folder: Path, step: int, total: int, signature: str, modules: dict[str, Any], optimizer) -> Path:
    """Write checkpoint `step` completely, then point `latest.json` at it; a crash mid-way leaves the old one.

    `modules` are the trained ones by pipeline name ({"unet": …, "text_encoder": …} or {"transformer": …}); their
    adapters are stored under that name (`unet.…`), so an SD1.x checkpoint keeps the layout it always had.
    """
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for name, module in modules.items():
        if ADAPTER in (getattr(module, "peft_config", None) or {}):
            state.update({f"{name}.{k}": v for k, v in adapter_state(module).items()})
    final = folder / f"step-{step:06d}"
    with atomic_dir(final) as tmp:
        save_file(state, tmp / "lora.safetensors")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    pointer = {"step": step, "total": total, "folder": final.name, "signature": signature}
    write_atomic(folder / "latest.json", json.dumps(pointer).encode())
    for old in folder.glob("step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(folder: Path | None) -> Checkpoint | None:
    if folder is None:
        return None
    pointer = Path(folder) / "latest.json"
    try:
        data = json.loads(pointer.read_text())
        ckpt = Checkpoint(int(data["step"]), int(data["total"]), Path(folder) / data["folder"], str(data["signature"]))
    except (OSError, ValueError, KeyError):
        return None
    return ckpt if (ckpt.folder / "lora.safetensors").is_file() else None


def load_checkpoint(ckpt: Checkpoint, modules: dict[str, Any], optimizer, device) -> None:
    import torch
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(ckpt.folder / "lora.safetensors")
    for name, module in modules.items():
        part = {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(f"{name}.")}
        if part:
            set_peft_model_state_dict(module, part, adapter_name=ADAPTER)
    optimizer.load_state_dict(torch.load(ckpt.folder / "optimizer.pt", map_location=device, weights_only=True))
