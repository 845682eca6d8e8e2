"""The denoiser compiled once (torch.compile), with one LoRA slot that users' LoRAs are hot-swapped into.

Switching users' LoRAs must never recompile, so every LoRA goes into the same adapter, the slot: padded to the
highest rank a Kabina training makes (diffusers' `enable_lora_hotswap`) and its weights copied in place
(`load_lora_weights(hotswap=True)`). peft keeps the slot's scale as a tensor, so a LoRA's strength is written into
that tensor rather than set as a Python float, which the compiled graph would specialise on. A base-model draw is
the slot at strength 0: the LoRA branch adds exactly zero, in the same graph. Training unloads every adapter; the
next LoRA prepares the slot again in the same shape, which the compiled graph's guards accept as it is.

Only the denoiser is compiled, and only LoRAs the slot can hold are drawn by it: diffusers cannot hot-swap
text-encoder layers, and a LoRA of a higher rank or other layers would change the graph. Those are drawn by the
eager denoiser (engine.drawing's ordinary adapter path), which is correct, only slower.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.detection import family_of

log = logging.getLogger(__name__)

SLOT = "kabina_slot"


@dataclass(frozen=True)
class CompileOptions:
    """How the denoiser is compiled: torch.compile's backend ("inductor"; "eager" or "aot_eager" only to find
    where a compile problem lies) and mode (None: torch's default)."""

    backend: str = "inductor"
    mode: str | None = None


def slot_rank(pipe) -> int:
    """The slot's rank: the highest a Kabina training of this family makes."""
    family = family_of(pipe)
    return max(family.rank_small_set, family.rank_large_set)


def lora_layers(path: Path) -> tuple[set[str], int]:
    """(the pipeline parts a LoRA file changes: "unet", "transformer", "text_encoder", …; its highest rank)."""
    from safetensors import safe_open

    parts: set[str] = set()
    rank = 0
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open is not iterable
            parts.add(key.split(".", 1)[0])
            if "lora_A" in key or "lora_down" in key:
                rank = max(rank, f.get_slice(key).get_shape()[0])
    return parts, rank


class CompiledDenoiser:
    """One pipeline's denoiser, compiled on first use, with the slot its LoRAs are swapped into."""

    def __init__(self, pipe, options: CompileOptions | None = None) -> None:
        self.pipe = pipe
        self.options = options or CompileOptions()
        self.attribute = family_of(pipe).denoiser  # "unet" | "transformer"
        self.eager = getattr(pipe, self.attribute)
        self.rank = slot_rank(pipe)
        self._compiled = None
        self._in_slot: Any = None  # the key of the LoRA in the slot (None: the slot is empty or not made yet)
        self._base_scales: dict[Any, float] = {}  # each LoRA layer's own scale (alpha / rank), before strength
        self.swaps = 0

    def holds(self, path: Path) -> bool:
        """Whether the LoRA at `path` can be drawn by the compiled denoiser (denoiser layers only, rank ≤ slot's)."""
        parts, rank = lora_layers(path)
        return parts == {self.attribute} and rank <= self.rank

    def _slot_made(self) -> bool:
        return SLOT in (getattr(self.eager, "peft_config", None) or {})

    def use(self, key: Any, path: Path, strength: float) -> None:
        """Put the LoRA at `path` in the slot (unless it is there already) at `strength`. Raises ValueError when
        the LoRA's layers are not the slot's (the caller draws it eagerly instead)."""
        if self._in_slot != key or not self._slot_made():
            if self._slot_made():
                self.pipe.load_lora_weights(str(path), adapter_name=SLOT, hotswap=True)
            else:
                # Before the first LoRA: the slot is padded to the rank every later LoRA fits in (and its scale
                # becomes a tensor), so later swaps copy weights into the same shapes.
                self.eager.enable_lora_hotswap(target_rank=self.rank)
                self.pipe.load_lora_weights(str(path), adapter_name=SLOT)
            self._in_slot = key
            self.swaps += 1
            self._base_scales = {layer: float(layer.scaling[SLOT]) for layer in self._slot_layers()}
        self.eager.set_adapter(SLOT)  # a LoRA drawn eagerly in between may have made another adapter the active one
        self._set_strength(strength)

    def use_base(self) -> None:
        """The base model: the slot at strength 0 (its branch then adds exactly nothing), in the same graph."""
        if self._slot_made():
            self.eager.set_adapter(SLOT)
            self._set_strength(0.0)

    def _slot_layers(self) -> list[Any]:
        return [m for m in self.eager.modules() if isinstance(getattr(m, "scaling", None), dict) and SLOT in m.scaling]

    def _set_strength(self, strength: float) -> None:
        import torch

        for layer, scale in self._base_scales.items():
            value = layer.scaling[SLOT]
            if isinstance(value, torch.Tensor):
                value.fill_(scale * strength)  # in place: the compiled graph reads the tensor, nothing recompiles
            else:  # pragma: no cover - enable_lora_hotswap turns every scale into a tensor
                layer.scaling[SLOT] = scale * strength

    def forget(self) -> None:
        """Every adapter was unloaded (before training): the next LoRA makes the slot again."""
        self._in_slot = None
        self._base_scales = {}

    def compiled(self):
        if self._compiled is None:
            import torch

            if self.attribute == "unet":
                # Convolutions run faster in channels-last on tensor cores; weights keep their values.
                self.eager.to(memory_format=torch.channels_last)
            self._compiled = torch.compile(self.eager, backend=self.options.backend, mode=self.options.mode)
            log.info("the %s is compiled on its first draw (%s)", self.attribute, self.options.backend)
        return self._compiled

    @contextlib.contextmanager
    def drawing(self, *pipes):
        """The compiled denoiser in `pipes` (the base pipeline and its image-to-image twin) for one draw; the eager
        one comes back after, since training and its in-between draws use it directly."""
        compiled = self.compiled()
        for pipe in pipes:
            setattr(pipe, self.attribute, compiled)
        try:
            yield
        finally:
            for pipe in pipes:
                setattr(pipe, self.attribute, self.eager)
