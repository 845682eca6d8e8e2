"""The GPU facade: the loaded base model and what can be done with it, each method on the GPU thread.

The worker's job handlers (engine/jobs) reach the model only through `Engine`: it loads the base model once,
keeps the drawer's LoRA cache, and lets a draw step in between two training steps without disturbing them.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from engine.class_images import ensure_class_images
from engine.compiled_denoiser import CompileOptions
from engine.drawing import Drawer, DrawRequest, limits_of
from engine.families import ASPECT_RATIOS
from storage.contract import EngineInfo


def is_out_of_memory(exc: BaseException) -> bool:
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except Exception:  # pragma: no cover
        pass
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_gpu_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Engine:
    """The loaded base model and what can be done with it; every method runs on the GPU thread."""

    def __init__(self, base_model: Path, runtime, pipe, key: str | None = None,
                 compile: CompileOptions | None = None) -> None:
        from engine.base_model import base_model_key, training_resolution

        self.base_model = base_model
        self.runtime = runtime
        self.pipe = pipe
        self.drawer = Drawer(pipe, runtime, compile=compile)
        self.key = key or base_model_key(base_model)
        self.resolution = training_resolution(pipe)
        self._training = False  # only read and written on the GPU thread

    @classmethod
    def load(cls, base_model: Path, device: str, compile: CompileOptions | None = None) -> Engine:
        from engine.base_model import load_base_pipeline, pick_runtime

        runtime = pick_runtime(device)
        return cls(base_model, runtime, load_base_pipeline(base_model, runtime), compile=compile)

    def info(self, draw_steps: int | None = None) -> EngineInfo:
        """The loaded model's limits for the bot: its family's, at this model's own size (DRAW_STEPS overrides)."""
        limits = limits_of(self.pipe)
        family = limits.family
        return EngineInfo(
            family=family.name, title=family.title, resolution=limits.resolution, max_draw_steps=family.max_steps,
            default_draw_steps=draw_steps or family.draw_steps, default_guidance=family.guidance,
            guidance_embedded=family.guidance_embedded, samplers=family.samplers,
            default_sampler=family.default_sampler, sizes={ar: limits.size_for(ar) for ar in ASPECT_RATIOS},
            negative_prompt=family.negative_prompt, token_limit=self.drawer.count_tokens("")[1],
            draws_from_pictures=self.drawer.draws_from_pictures(),
            takes_references=family.takes_references,
        )

    def identifier_pool(self) -> list[str]:
        from engine.conditioning import identifier_pool

        return identifier_pool(self.pipe)

    def draw(self, request: DrawRequest, lighter: bool = False):
        if not self._training:
            return self.drawer.draw(request, lighter=lighter)
        with self._training_paused():
            return self.drawer.draw(request, lighter=lighter)

    @contextlib.contextmanager
    def _training_paused(self):
        """A draw between two training steps: the trained adapter steps aside, then comes back untouched.

        The draw's LoRA is loaded beside the training adapter and deleted afterwards (not cached: the training
        ends with every adapter unloaded anyway); the training's weights, optimizer and random streams are not
        touched, so a training with draws in between ends bit for bit where it would have without them."""
        from engine.lora_files import ADAPTER

        unet = self.pipe.unet
        was_training = unet.training
        unet.eval()
        try:
            yield
        finally:
            adapters = list(getattr(unet, "peft_config", {}) or {})
            visitors = [name for name in adapters if name != ADAPTER]
            if visitors:
                self.pipe.delete_adapters(visitors)
            self.drawer.clear_cache()
            if adapters:
                self.pipe.enable_lora()  # a base-model draw disabled every adapter
            if ADAPTER in adapters:
                unet.set_adapter(ADAPTER)
                text_encoder_adapters = getattr(self.pipe.text_encoder, "peft_config", {}) or {}
                if ADAPTER in text_encoder_adapters:
                    self.pipe.text_encoder.set_adapter(ADAPTER)
            if was_training:
                unet.train()

    def train(self, spec, on_progress, should_stop, pause_point=None):
        from engine.training import train

        self.drawer.forget_loras()  # training needs the bare base model
        self._training = self.drawer.eager_only = True  # the training owns the denoiser's adapters
        try:
            # The library draws the samples and the report card too (with pause points between its draws).
            result = train(spec, on_progress, should_stop, pipe=self.pipe, runtime=self.runtime,
                           pause_point=pause_point)
            return result, result.report_card_path, result.class_drift
        finally:
            self._training = self.drawer.eager_only = False
            self.drawer.forget_loras()

    def class_images(self, folder: Path, prompt: str, count: int, on_progress, should_stop, pause_point=None):
        self.drawer.forget_loras()
        # Draws in between must leave no adapter behind in the class images (nor compile the bare denoiser).
        self._training = self.drawer.eager_only = True
        try:
            return ensure_class_images(
                self.pipe, folder, prompt, count, self.resolution, on_progress=on_progress,
                should_stop=should_stop, pause_point=pause_point,
            )
        finally:
            self._training = self.drawer.eager_only = False
            self.drawer.forget_loras()
