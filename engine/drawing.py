"""Drawing: the loaded base pipeline plus a per-request LoRA from an in-memory cache of adapters, for every family.

A request may name a sampler (`dpm++2m-karras`, `euler-a`, `euler`, `ddim`, `default`; FLUX: flow-matching ones
only), a LoRA strength (`--strength 0.8`: 0 draws exactly the base picture), an aspect ratio (`3:2`, `16:9`, …,
turned into a size on the family's grid within its pixel budget) or a picture to draw from. A request's options
are the draw job's (storage.contract.DrawPayload), by the same names, checked against the limits defined there
(engine.draw_request); the family's own defaults and limits (engine.families.FAMILY_LIMITS) are scaled down for a
smaller model of the family (the tiny test models).
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from engine.compiled_denoiser import CompiledDenoiser, CompileOptions
from engine.detection import family_of

# The request, its limits and its size have their own module; callers know these names from here too.
from engine.draw_request import (
    DrawError,
    DrawRequest,
    ModelLimits,
    limits_of,
    seeds_for,
    size_from_picture,
    size_of,
)
from engine.families import Family
from engine.variations import variation_latents

log = logging.getLogger(__name__)

MAX_SIDE = 1024  # SD1.x's; every family publishes its own (engine.families), this name stays for old callers


@dataclass
class DrawnImages:
    images: list[Image.Image]
    seeds: list[int]
    prompt_truncated: bool
    prompt_tokens: int  # text tokens of the prompt; the encoder reads at most `token_limit`
    token_limit: int
    lora_switch_ms: float
    negative_tokens: int = 0
    negative_truncated: bool = False
    width: int = 0
    height: int = 0
    steps: int = 0
    guidance: float = 0.0
    sampler: str = "default"
    strength: float = 1.0
    family: str = ""


def pipeline_arguments(pipe, *, steps: int, guidance: float, width: int, height: int,
                       negative: list[str] | None = None, count: int = 1) -> dict[str, Any]:
    """The keyword arguments of one call to the family's pipeline for `count` prompts (shared by draws, samples
    and class images)."""
    from engine.conditioning import max_sequence_length

    family = family_of(pipe)
    args: dict[str, Any] = {"num_inference_steps": steps, "width": width, "height": height}
    if family.architecture in ("flux2", "z-image"):
        # Distilled klein ignores guidance; the base variants run CFG against the empty prompt above 1. Z-Image
        # runs CFG above 1 against the negative prompt (Turbo draws at 0: none).
        args["guidance_scale"] = guidance
        args["max_sequence_length"] = 512
        if family.negative_prompt:
            args["negative_prompt"] = negative
    elif family.architecture == "qwen-image":
        from engine.qwen_image import pipeline_arguments as qwen_arguments

        # True CFG (true_cfg_scale) against the negative prompt, the model card's " " when none is given.
        args.update(qwen_arguments(guidance, negative, count))
    elif family.is_flux:
        # dev: guidance is an input of the transformer (FluxPipeline embeds guidance_scale); schnell has none.
        args["guidance_scale"] = guidance
        args["max_sequence_length"] = max_sequence_length(family)
    else:
        args["guidance_scale"] = guidance
        args["negative_prompt"] = negative
    return args


def render(pipe, prompts: list[str], generators, *, steps: int, guidance: float, width: int, height: int,
           sampler: str | None = None, negative: list[str] | None = None, latents=None,
           references: list[Image.Image] | None = None) -> list[Image.Image]:
    """Draw `prompts` (one generator each) with the family's pipeline and sampler `sampler` (None: as installed);
    `references` are pictures every prompt is conditioned on (families that take them)."""
    import torch

    from engine.samplers import using_sampler

    args = pipeline_arguments(pipe, steps=steps, guidance=guidance, width=width, height=height, negative=negative,
                              count=len(prompts))
    if references:
        args["image"] = list(references)
    with using_sampler(pipe, sampler), torch.inference_mode():
        return pipe(prompt=prompts, generator=generators, latents=latents, **args).images


class Drawer:
    """Keeps the base pipeline and up to `cache_size` LoRA adapters loaded; switching is a flag flip.

    With `compile` (COMPILE_DENOISER), text-to-image draws run a torch.compile'd denoiser whose one LoRA slot takes
    each user's LoRA by hot-swap (engine.compiled_denoiser); what the slot cannot hold, and every draw while
    `eager_only` (a training owns the denoiser's adapters), is drawn eagerly as without it.
    """

    def __init__(self, pipe, runtime, cache_size: int = 8, compile: CompileOptions | None = None) -> None:
        self.pipe = pipe
        self.runtime = runtime
        self.cache_size = cache_size
        self._adapters: OrderedDict[tuple[str, int, int], str] = OrderedDict()
        self._counter = 0
        self._image_pipe = None  # the family's image-to-image pipeline on the same components, made when needed
        self.compiled = CompiledDenoiser(pipe, compile) if compile is not None else None
        self.eager_only = False
        self._on_compiled = False  # whether the LoRA chosen by the last use_lora is drawn by the compiled denoiser

    def draws_from_pictures(self) -> bool:
        """Whether this model has an image-to-image mode that starts from a picture (FLUX.2 [klein]'s takes a
        picture only as a reference to edit by, with no strength: not the same thing)."""
        import inspect

        try:
            return "strength" in inspect.signature(self.image_pipe().__call__).parameters
        except DrawError:
            return False

    def image_pipe(self):
        """The same model's image-to-image mode: diffusers builds it from the loaded components (no new weights,
        and the LoRA adapters loaded into the shared denoiser and text encoders apply to it too)."""
        if self._image_pipe is None:
            from diffusers import AutoPipelineForImage2Image

            try:
                image_pipe = AutoPipelineForImage2Image.from_pipe(self.pipe)
            except (ValueError, KeyError) as exc:
                raise DrawError(f"{self.family.title} cannot draw from a picture here") from exc
            image_pipe._kabina_family = self.family.name  # the same model: the family is the base pipeline's
            self._image_pipe = image_pipe
        return self._image_pipe

    @property
    def family(self) -> Family:
        return family_of(self.pipe)

    @property
    def resolution(self) -> int:
        from engine.base_model import training_resolution

        return training_resolution(self.pipe)

    @property
    def limits(self) -> ModelLimits:
        return limits_of(self.pipe)

    def count_tokens(self, prompt: str) -> tuple[int, int]:
        """(text tokens in the prompt, how many the text encoder reads): CLIP 75, FLUX's T5 511 (dev) / 255."""
        from engine.conditioning import count_tokens

        return count_tokens(self.pipe, prompt)

    def _has_adapters(self) -> bool:
        from engine.base_model import has_lora

        return has_lora(self.pipe)

    def forget_loras(self) -> None:
        """Drop every cached adapter (before training, which needs the bare base model)."""
        if self._adapters or self._has_adapters():
            self.pipe.unload_lora_weights()
        self.clear_cache()

    def clear_cache(self) -> None:
        """Forget the cache's names after someone else deleted the adapters behind them."""
        self._adapters.clear()
        if self.compiled is not None:
            self.compiled.forget()

    def _compiled_usable(self) -> bool:
        return self.compiled is not None and not self.eager_only

    def use_lora(self, path: Path | None, scale: float = 1.0) -> float:
        """Make `path` (or no LoRA) the active one at `scale`; returns milliseconds spent."""
        started = time.perf_counter()
        self._on_compiled = False
        if path is None:
            if self._compiled_usable():
                self.compiled.use_base()
                self._on_compiled = True
            elif self._has_adapters():
                self.pipe.disable_lora()
            return (time.perf_counter() - started) * 1000
        path = Path(path)
        try:
            stat = path.stat()
        except OSError:
            raise DrawError("the model's weights are missing") from None
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        if self._compiled_usable() and self._swap_into_slot(key, path, scale):
            self._on_compiled = True
            return (time.perf_counter() - started) * 1000
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
        # The weight multiplies every LoRA layer's scale (UNet/transformer and text encoders alike): 0 adds exactly
        # nothing to the base model's outputs, so strength 0 draws the base picture.
        self.pipe.set_adapters(name, adapter_weights=float(scale))
        return (time.perf_counter() - started) * 1000

    def _swap_into_slot(self, key, path: Path, scale: float) -> bool:
        """The LoRA into the compiled denoiser's slot; False when the slot cannot hold it (drawn eagerly then)."""
        assert self.compiled is not None
        try:
            if not self.compiled.holds(path):
                return False
            self.compiled.use(key, path, float(scale))
        except ValueError as exc:  # layers the slot was not made with: the eager path draws it
            log.info("LoRA %s drawn without the compiled denoiser: %s", path.name, exc)
            return False
        except Exception as exc:
            raise DrawError("the model's weights cannot be read") from exc
        return True

    def _after_draw(self) -> None:
        """With a compiled denoiser, a LoRA drawn eagerly leaves no adapter beside the slot (it would change the
        compiled graph's modules and recompile it)."""
        if self.compiled is None or self._on_compiled or self.eager_only or not self._adapters:
            return
        self.pipe.delete_adapters(list(self._adapters.values()))
        self._adapters.clear()

    def check(self, request: DrawRequest) -> dict[str, Any]:
        """Validate a request against the job contract and then the model's family; the settings it resolves to
        (or a DrawError)."""
        request.check_limits()
        family = self.family
        if not request.prompt.strip():
            raise DrawError("the prompt is empty")
        steps = family.draw_steps if request.steps is None else int(request.steps)
        if not 1 <= steps <= family.max_steps:
            raise DrawError(f"steps must be between 1 and {family.max_steps}")
        guidance = family.guidance if request.guidance is None else float(request.guidance)
        sampler = request.sampler or family.default_sampler
        if sampler.lower() not in family.samplers:
            raise DrawError(f"{family.title} has no sampler {sampler!r}; available: {', '.join(family.samplers)}")
        if request.negative_prompt.strip() and not family.negative_prompt:
            raise DrawError(f"{family.title} draws without a negative prompt; leave it out")
        if request.references and not family.takes_references:
            raise DrawError(f"{family.title} cannot draw from reference pictures")
        if request.init_image is not None:
            width, height = size_from_picture(request.init_image, self.limits, request.upscale)
        else:
            width, height = size_of(request, self.limits)
        return {"steps": steps, "guidance": guidance, "sampler": sampler.lower(), "width": width, "height": height,
                "strength": float(request.strength)}

    def draw(self, request: DrawRequest, *, lighter: bool = False) -> DrawnImages:
        """Draw the request; `lighter` (after an out-of-memory error) draws one image at a time, VAE in slices."""
        settings = self.check(request)
        seeds = seeds_for(request)
        tokens, limit = self.count_tokens(request.prompt)
        negative_tokens = self.count_tokens(request.negative_prompt)[0] if request.negative_prompt else 0
        switch_ms = self.use_lora(request.lora, settings["strength"])
        try:
            if request.init_image is not None:
                images = self._draw_from_picture(request, seeds, settings, lighter)
            else:
                images = self._draw_from_noise(request, seeds, settings, lighter)
        finally:
            self._after_draw()
        return self._result(request, images, seeds, settings, tokens, limit, negative_tokens, switch_ms)

    def _draw_from_noise(self, request: DrawRequest, seeds: list[int], settings: dict[str, Any],
                         lighter: bool) -> list[Image.Image]:
        import contextlib

        import torch

        width, height = settings["width"], settings["height"]
        latents = variation_latents(self.pipe, request, seeds, width, height)
        indices = list(range(len(seeds)))
        groups = [[i] for i in indices] if lighter else [indices]
        images: list[Image.Image] = []
        if lighter:
            self.pipe.vae.enable_slicing()
        compiled = self.compiled.drawing(self.pipe) if self._on_compiled else contextlib.nullcontext()
        try:
            with compiled:
                for group in groups:
                    images += render(
                        self.pipe,
                        [request.prompt] * len(group),
                        [torch.Generator("cpu").manual_seed(seeds[i]) for i in group],
                        steps=settings["steps"], guidance=settings["guidance"], width=width, height=height,
                        sampler=settings["sampler"],
                        negative=[request.negative_prompt] * len(group) if request.negative_prompt else None,
                        latents=None if latents is None else latents[group], references=request.references,
                    )
        finally:
            if lighter:
                self.pipe.vae.disable_slicing()
        return images

    def _draw_from_picture(self, request: DrawRequest, seeds: list[int], settings: dict[str, Any],
                           lighter: bool) -> list[Image.Image]:
        """Image-to-image with the same model (and LoRA): the picture resized to the size to draw, then redrawn
        by `image_change`; a big upscale decodes its latents in tiles so the VAE fits in memory."""
        import torch

        from engine.samplers import using_sampler

        if not self.draws_from_pictures():
            raise DrawError(f"{self.family.title} cannot draw from a picture")
        pipe = self.image_pipe()
        width, height = settings["width"], settings["height"]
        assert request.init_image is not None
        start = request.init_image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
        args = pipeline_arguments(pipe, steps=settings["steps"], guidance=settings["guidance"], width=width,
                                  height=height, negative=[request.negative_prompt] * len(seeds)
                                  if request.negative_prompt else None, count=len(seeds))
        if not self.family.is_flux:
            args.pop("width"), args.pop("height")  # SD's image-to-image takes the size from the picture
        # The pipeline runs steps × change steps: at least one, however small the change.
        args["num_inference_steps"] = max(settings["steps"], math.ceil(1 / float(request.image_change)))
        tiled = lighter or max(width, height) > self.limits.max_side
        if tiled:
            pipe.vae.enable_tiling()
        try:
            with using_sampler(pipe, settings["sampler"]), torch.inference_mode():
                return pipe(prompt=[request.prompt] * len(seeds), image=[start] * len(seeds),
                            strength=float(request.image_change),
                            generator=[torch.Generator("cpu").manual_seed(s) for s in seeds], **args).images
        finally:
            if tiled:
                pipe.vae.disable_tiling()

    def _result(self, request: DrawRequest, images: list[Image.Image], seeds: list[int], settings: dict[str, Any],
                tokens: int, limit: int, negative_tokens: int, switch_ms: float) -> DrawnImages:
        width, height = settings["width"], settings["height"]
        return DrawnImages(
            images=images,
            seeds=seeds,
            prompt_truncated=tokens > limit,
            prompt_tokens=tokens,
            token_limit=limit,
            lora_switch_ms=round(switch_ms, 3),
            negative_tokens=negative_tokens,
            negative_truncated=negative_tokens > limit,
            width=width,
            height=height,
            steps=settings["steps"],
            guidance=settings["guidance"],
            sampler=settings["sampler"],
            strength=settings["strength"],
            family=self.family.name,
        )
