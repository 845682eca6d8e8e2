"""Drawing: the loaded base pipeline plus a per-request LoRA from an in-memory cache of adapters."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from storage.contract import DEFAULT_GUIDANCE, MAX_DRAW_STEPS
from storage.contract import MAX_IMAGES_PER_DRAW as MAX_IMAGES

MAX_SIDE = 1024


class DrawError(Exception):
    """A request we cannot draw (bad parameters, unreadable LoRA); the message is fit for the user."""


@dataclass
class DrawRequest:
    prompt: str
    negative_prompt: str = ""
    n: int = 1
    steps: int = 25
    guidance: float = DEFAULT_GUIDANCE
    seeds: list[int] | None = None  # None: random seeds, returned in the result
    width: int | None = None  # None: the model's own resolution
    height: int | None = None
    lora: Path | None = None  # None: the base model
    # "Variations of #k": every image starts from seed k's noise blended with its own variation seed's noise.
    variation_seeds: list[int] | None = None
    variation_strength: float = 0.0


@dataclass
class DrawResult:
    images: list[Image.Image]
    seeds: list[int]
    prompt_truncated: bool
    prompt_tokens: int  # text tokens of the prompt; the encoder reads at most `token_limit`
    token_limit: int
    lora_switch_ms: float


def _side(value: int | None, default: int, step: int) -> int:
    side = default if value is None else int(value)
    side = max(step, min(MAX_SIDE, side))
    return side - side % step  # the VAE and UNet need multiples of 8 (of the latent grid)


def seeds_for(request: DrawRequest) -> list[int]:
    if not 1 <= request.n <= MAX_IMAGES:
        raise DrawError(f"you can ask for 1 to {MAX_IMAGES} images")
    given = list(request.seeds or [])
    if not given:
        return [secrets.randbelow(2**31) for _ in range(request.n)]
    # A single seed for several images: seed, seed+1, … so each picture can be redrawn alone.
    while len(given) < request.n:
        given.append(given[-1] + 1)
    return [int(s) % 2**32 for s in given[: request.n]]


class Drawer:
    """Keeps the base pipeline and up to `cache_size` LoRA adapters loaded; switching is a flag flip."""

    def __init__(self, pipe, runtime, cache_size: int = 8) -> None:
        self.pipe = pipe
        self.runtime = runtime
        self.cache_size = cache_size
        self._adapters: OrderedDict[tuple[str, int, int], str] = OrderedDict()
        self._counter = 0

    @property
    def resolution(self) -> int:
        return int(self.pipe.unet.config.sample_size) * self.pipe.vae_scale_factor

    def count_tokens(self, prompt: str) -> tuple[int, int]:
        """(text tokens in the prompt, how many the text encoder reads): CLIP reads 77 minus start and end."""
        tok = self.pipe.tokenizer
        ids = tok(prompt, truncation=False, add_special_tokens=False).input_ids
        return len(ids), tok.model_max_length - 2

    def forget_loras(self) -> None:
        """Drop every cached adapter (before training, which needs the bare base model)."""
        if self._adapters or getattr(self.pipe.unet, "peft_config", None):
            self.pipe.unload_lora_weights()
        self._adapters.clear()

    def clear_cache(self) -> None:
        """Forget the cache's names after someone else deleted the adapters behind them."""
        self._adapters.clear()

    def use_lora(self, path: Path | None) -> float:
        """Make `path` (or no LoRA) the active one; returns milliseconds spent."""
        started = time.perf_counter()
        if path is None:
            if getattr(self.pipe.unet, "peft_config", None):
                self.pipe.disable_lora()
            return (time.perf_counter() - started) * 1000
        path = Path(path)
        try:
            stat = path.stat()
        except OSError:
            raise DrawError("the model's weights are missing") from None
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        name = self._adapters.get(key)
        if name is None:
            self._counter += 1
            name = f"lora{self._counter}"
            try:
                self.pipe.load_lora_weights(str(path), adapter_name=name)
            except Exception as exc:
                raise DrawError("the model's weights cannot be read") from exc
            self._adapters[key] = name
            while len(self._adapters) > self.cache_size:
                _, oldest = self._adapters.popitem(last=False)
                self.pipe.delete_adapters(oldest)
        self._adapters.move_to_end(key)
        self.pipe.enable_lora()
        self.pipe.set_adapters(name)
        return (time.perf_counter() - started) * 1000

    def _variation_latents(self, request: DrawRequest, seeds: list[int], width: int, height: int):
        """Starting noise for variations: seed noise and variation noise blended on the sphere (slerp), so a
        small strength keeps the picture's composition and changes its details; None for ordinary draws."""
        if not request.variation_seeds or request.variation_strength <= 0:
            return None
        import torch

        if len(request.variation_seeds) < len(seeds):
            raise DrawError("each variation needs its own variation seed")
        strength = min(1.0, float(request.variation_strength))
        factor = self.pipe.vae_scale_factor
        shape = (self.pipe.unet.config.in_channels, height // factor, width // factor)

        def noise(seed: int):
            return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(seed) % 2**32))

        blended = []
        for seed, variation in zip(seeds, request.variation_seeds, strict=False):
            a, b = noise(seed), noise(variation)
            omega = torch.arccos((a.flatten() @ b.flatten() / (a.norm() * b.norm())).clamp(-1, 1))
            if float(omega) < 1e-4:
                blended.append(a)
                continue
            sin = torch.sin(omega)
            blended.append(torch.sin((1 - strength) * omega) / sin * a + torch.sin(strength * omega) / sin * b)
        return torch.stack(blended).to(self.pipe.unet.device, self.pipe.unet.dtype)

    def draw(self, request: DrawRequest, *, lighter: bool = False) -> DrawResult:
        """Draw the request; `lighter` (after an out-of-memory error) draws one image at a time, VAE in slices."""
        import torch

        seeds = seeds_for(request)
        if not request.prompt.strip():
            raise DrawError("the prompt is empty")
        if not 1 <= request.steps <= MAX_DRAW_STEPS:
            raise DrawError(f"steps must be between 1 and {MAX_DRAW_STEPS}")
        # Each UNet down block halves the latent grid, so sides must divide by vae factor × 2^(blocks-1).
        step = self.pipe.vae_scale_factor * 2 ** (len(self.pipe.unet.config.block_out_channels) - 1)
        width = _side(request.width, self.resolution, step)
        height = _side(request.height, self.resolution, step)
        tokens, limit = self.count_tokens(request.prompt)
        switch_ms = self.use_lora(request.lora)
        latents = self._variation_latents(request, seeds, width, height)
        indices = list(range(len(seeds)))
        groups = [[i] for i in indices] if lighter else [indices]
        images: list[Image.Image] = []
        if lighter:
            self.pipe.vae.enable_slicing()
        try:
            for group in groups:
                with torch.inference_mode():
                    images += self.pipe(
                        prompt=[request.prompt] * len(group),
                        negative_prompt=[request.negative_prompt] * len(group) if request.negative_prompt else None,
                        num_inference_steps=request.steps,
                        guidance_scale=request.guidance,
                        width=width,
                        height=height,
                        generator=[torch.Generator("cpu").manual_seed(seeds[i]) for i in group],
                        latents=None if latents is None else latents[group],
                    ).images
        finally:
            if lighter:
                self.pipe.vae.disable_slicing()
        return DrawResult(
            images=images,
            seeds=seeds,
            prompt_truncated=tokens > limit,
            prompt_tokens=tokens,
            token_limit=limit,
            lora_switch_ms=round(switch_ms, 3),
        )
