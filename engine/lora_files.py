"""LoRA files: the diffusers .safetensors, the kohya/A1111 copy, and training checkpoints (LoRA + optimizer)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
ADAPTER = "kabina_training"


def _replace_atomically(tmp: Path, target: Path) -> Path:
    os.replace(tmp, target)
    return target


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
    """LoRA weights in the layout `pipe.load_lora_weights(target)` reads, with the alpha metadata."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    target = Path(target)
    unet_layers = convert_state_dict_to_diffusers(adapter_state(unet, adapter))
    te_layers = te_meta = None
    if text_encoder is not None and adapter in getattr(text_encoder, "peft_config", {}):
        te_layers = convert_state_dict_to_diffusers(adapter_state(text_encoder, adapter))
        te_meta = adapter_metadata(text_encoder, adapter)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".partial-") as tmp:
        StableDiffusionPipeline.save_lora_weights(
            tmp,
            unet_lora_layers=unet_layers,
            text_encoder_lora_layers=te_layers,
            weight_name="lora.safetensors",
            unet_lora_adapter_metadata=adapter_metadata(unet, adapter),
            text_encoder_lora_adapter_metadata=te_meta,
        )
        return _replace_atomically(Path(tmp) / "lora.safetensors", target)


def kohya_state(peft_state: dict[str, Any], prefix: str, alpha: float) -> dict[str, Any]:
    """PEFT names → kohya/A1111 names: `lora_unet_down_blocks_0_…_to_q.lora_down.weight` plus one `.alpha`."""
    import torch

    out: dict[str, Any] = {}
    for key, tensor in peft_state.items():
        module, _, kind = key.partition(".lora_")
        name = f"{prefix}_{module.replace('.', '_')}"
        if kind.startswith("A."):
            out[f"{name}.lora_down.weight"] = tensor
        elif kind.startswith("B."):
            out[f"{name}.lora_up.weight"] = tensor
        else:
            continue
        out[f"{name}.alpha"] = torch.tensor(float(alpha))
    return out


def save_kohya_lora(target: Path, unet, text_encoder=None, adapter: str = ADAPTER) -> Path:
    """The same LoRA in the key format of kohya's sd-scripts, which AUTOMATIC1111, ComfyUI and others load."""
    from safetensors.torch import save_file

    target = Path(target)
    config = unet.peft_config[adapter]
    state = kohya_state(adapter_state(unet, adapter), "lora_unet", config.lora_alpha)
    if text_encoder is not None and adapter in getattr(text_encoder, "peft_config", {}):
        te_alpha = text_encoder.peft_config[adapter].lora_alpha
        te_state = adapter_state(text_encoder, adapter)
        # transformers 5 dropped CLIPTextModel's `text_model.` level; kohya names still carry it.
        te_state = {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in te_state.items()}
        state.update(kohya_state(te_state, "lora_te", te_alpha))
    metadata = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(config.r),
        "ss_network_alpha": str(config.lora_alpha),
        "ss_base_model_version": "sd_v1",
    }
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".partial-", suffix=".tmp")
    os.close(fd)
    save_file(state, tmp, metadata=metadata)
    return _replace_atomically(Path(tmp), target)


# --- checkpoints -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    step: int
    total: int
    folder: Path
    signature: str


def save_checkpoint(folder: Path, step: int, total: int, signature: str, unet, text_encoder, optimizer) -> Path:
    """Write checkpoint `step` completely, then point `latest.json` at it; a crash mid-way leaves the old one."""
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".partial-"))
    state = {f"unet.{k}": v for k, v in adapter_state(unet).items()}
    if text_encoder is not None and ADAPTER in getattr(text_encoder, "peft_config", {}):
        state.update({f"text_encoder.{k}": v for k, v in adapter_state(text_encoder).items()})
    save_file(state, tmp / "lora.safetensors")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    final = folder / f"step-{step:06d}"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    pointer = {"step": step, "total": total, "folder": final.name, "signature": signature}
    fd, tmp_json = tempfile.mkstemp(dir=folder, prefix=".partial-", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(pointer, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp_json, folder / "latest.json")
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


def load_checkpoint(ckpt: Checkpoint, unet, text_encoder, optimizer, device) -> None:
    import torch
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(ckpt.folder / "lora.safetensors")
    unet_part = {k[len("unet.") :]: v for k, v in state.items() if k.startswith("unet.")}
    set_peft_model_state_dict(unet, unet_part, adapter_name=ADAPTER)
    te_part = {k[len("text_encoder.") :]: v for k, v in state.items() if k.startswith("text_encoder.")}
    if te_part and text_encoder is not None:
        set_peft_model_state_dict(text_encoder, te_part, adapter_name=ADAPTER)
    optimizer.load_state_dict(torch.load(ckpt.folder / "optimizer.pt", map_location=device, weights_only=True))
