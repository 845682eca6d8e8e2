"""The steps of a training, each callable and timeable alone: data → cache → loop (engine.training.train runs them).

One loop for every family; what differs lives in engine.conditioning (what the denoiser reads about a prompt),
engine.objectives (noising, target and loss) and engine.families (targets, defaults, export names). Prior
preservation comes in three methods (PRIOR_METHODS): the paper's class images, the frozen base model's own output,
or none.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from PIL import Image

from engine.base_model import has_lora, remove_lora  # noqa: F401  (engine.training re-exports them)
from engine.class_images import Stopped
from engine.conditioning import PromptEmbeds, encode, tokenize
from engine.detection import family_of
from engine.families import Family
from engine.lora_files import ADAPTER
from engine.objectives import EncodedImages, Objective, StepBatch, sdxl_time_ids, step_batch

if TYPE_CHECKING:
    from engine.training import TrainSpec

log = logging.getLogger(__name__)

# class-images: DreamBooth's paper: the class prompt on pictures the base model drew of its class, once per class.
# output: at each step the class prompt on the instance's own noisy latents, held to what the frozen base model
#         (LoRA off, no gradients) predicts there: no class pictures to draw, one no-grad forward pass per step.
# off: the instance loss alone.
PRIOR_METHODS: tuple[str, ...] = ("class-images", "output", "off")


class TrainProgress(TypedDict, total=False):
    """What a long job reports as it goes (storage.contract.Progress checks it at the worker's edge)."""

    stage: str  # class_images | training | samples | report_card
    step: int
    total: int
    loss: float | None
    eta_s: float | None
    instance_loss: float | None
    class_loss: float | None


ProgressFn = Callable[[TrainProgress], None]
StopFn = Callable[[], bool]


def progress(stage: str, step: int, total: int, eta_s: float | None = None, **losses: float | None) -> TrainProgress:
    return TrainProgress(stage=stage, step=step, total=total, loss=losses.pop("loss", None), eta_s=eta_s, **losses)


class TrainingStopped(Stopped):
    """should_stop() turned true; a checkpoint of the finished steps was written first."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped at step {step}")
        self.step = step


# --- data ------------------------------------------------------------------------------------------------------


def _to_tensor(images: list[Image.Image], resolution: int):
    import numpy as np
    import torch

    arrays = []
    for image in images:
        if image.size != (resolution, resolution):
            image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
        arrays.append(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def encode_images(pipe, images: list[Image.Image], resolution: int, batch: int = 8) -> EncodedImages:
    """VAE posteriors (mean, std) of the pictures, unscaled; an fp16 VAE that overflows is run in fp32."""
    import torch

    means, stds = [], []
    vae = pipe.vae
    # Qwen-Image's VAE is a causal 3D one: a picture is a one-frame video [B, C, 1, H, W]; its latents keep no frame.
    video = family_of(pipe).architecture == "qwen-image"
    # SDXL's (and FLUX's) stock VAE produces inf/NaN in fp16; its config says so with force_upcast, and the SDXL
    # recipe keeps it in fp32 unless a fixed VAE is given (README_sdxl.md). bf16 has fp32's range: no upcast.
    upcast = vae.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
    if upcast:
        vae.to(torch.float32)
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch):
                pixels = _to_tensor(images[start : start + batch], resolution).to(vae.device, vae.dtype)
                dist = vae.encode(pixels.unsqueeze(2) if video else pixels).latent_dist
                mean, std = (dist.mean.squeeze(2), dist.std.squeeze(2)) if video else (dist.mean, dist.std)
                means.append(mean.float().cpu())
                stds.append(std.float().cpu())
    finally:
        if upcast:
            vae.to(torch.float16)
    return EncodedImages(torch.cat(means), torch.cat(stds))


# --- LoRA ------------------------------------------------------------------------------------------------------


def denoiser(pipe):
    """The module LoRA trains: the UNet (SD families) or the transformer (FLUX)."""
    return getattr(pipe, family_of(pipe).denoiser)


def trained_text_encoders(pipe, spec: TrainSpec) -> list[tuple[str, Any]]:
    family = family_of(pipe)
    if not spec.train_text_encoder:
        return []
    if not family.text_encoder_lora_targets:
        raise ValueError(f"text-encoder LoRA is not offered for {family.title}; train the {family.denoiser} only")
    return [(name, getattr(pipe, name)) for name in family.text_encoders]


def add_lora(pipe, spec: TrainSpec) -> list:
    """Fresh LoRA adapters on the family's targets (and optionally its text encoders); returns param groups."""
    from peft import LoraConfig

    family = family_of(pipe)
    rank = spec.lora_rank(family)
    lr = spec.lr(family)
    model = denoiser(pipe)
    # alpha = rank: scale 1, so the learning rate means the same at any rank.
    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=family.lora_target_modules)
    model.add_adapter(config, adapter_name=ADAPTER)
    model.set_adapter(ADAPTER)
    groups = [{"params": _trainable(model), "lr": lr}]
    for _, encoder in trained_text_encoders(pipe, spec):
        te_config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                               target_modules=list(family.text_encoder_lora_targets))
        encoder.add_adapter(te_config, adapter_name=ADAPTER)
        encoder.set_adapter(ADAPTER)
        groups.append({"params": _trainable(encoder), "lr": lr / 2})
    return groups


def _trainable(module) -> list:
    import torch

    params = []
    for name, param in module.named_parameters():
        if f"lora_A.{ADAPTER}" in name or f"lora_B.{ADAPTER}" in name:
            # Trainable weights stay float32 even when the frozen model is bf16/fp16: Adam's tiny updates
            # would round away otherwise (the recipes' cast_training_params).
            param.data = param.data.to(torch.float32)
            param.requires_grad_(True)
            params.append(param)
        else:
            param.requires_grad_(False)
    return params


@contextlib.contextmanager
def lora_off(model, layers: list | None = None):
    """The frozen base model for a moment: every LoRA layer of the module (or `layers`, found once by the caller)
    bypassed, then back, for one no-grad forward pass.

    peft's own model.disable_adapters() / enable_adapters() does the same and also resets the requires_grad of every
    adapter weight each time: on output preservation's every step that was ~15 ms of a 120 ms step on the tiny
    SD1 model. Only the layers' switch matters under no_grad, so only it is flipped."""
    layers = lora_layers(model) if layers is None else layers
    for layer in layers:
        layer._disable_adapters = True
    try:
        yield
    finally:
        for layer in layers:
            layer._disable_adapters = False


def lora_layers(model) -> list:
    """The module's peft layers (what lora_off switches)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


# --- the pieces of a step --------------------------------------------------------------------------------------


def combined_loss(per_example, prior_loss_weight: float):
    """DreamBooth's objective: the instance loss plus prior_loss_weight times the class (prior) loss."""
    instance_loss = per_example[0]
    if per_example.shape[0] < 2:
        return instance_loss, instance_loss, None
    class_loss = per_example[1]
    return instance_loss + prior_loss_weight * class_loss, instance_loss, class_loss


def objective_for(pipe, runtime) -> Objective:
    from engine.samplers import own_scheduler_config

    return Objective(family_of(pipe), own_scheduler_config(pipe), runtime)


def time_ids_for(pipe, spec: TrainSpec, batch: StepBatch, resolution: int, method: str = "class-images"):
    """SDXL's time_ids: the instance photo's own geometry; class images are drawn at the target size, and output
    preservation's class row sits on the instance's own latents, so it keeps the photo's geometry."""
    if family_of(pipe).name != "sdxl":
        return None
    geometry = spec.geometry()
    rows = [geometry[batch.picks[0]]]
    if len(batch.picks) > 1:
        rows.append(rows[0] if method == "output" else (resolution, resolution, 0, 0))
    return sdxl_time_ids(rows, resolution)


def with_class_row(batch: StepBatch) -> StepBatch:
    """Output preservation's batch: the instance row twice (same latents, noise and timestep); row 1 gets the
    class prompt and the base model's prediction as its target."""
    import torch

    def twice(t):
        return torch.cat([t[:1], t[:1]])

    return StepBatch(twice(batch.latents), twice(batch.noise), twice(batch.timesteps), [batch.picks[0]] * 2)


def wants_checkpointing(spec: TrainSpec, runtime, family: Family) -> bool:
    if spec.gradient_checkpointing is not None:
        return spec.gradient_checkpointing
    if not runtime.is_cuda:
        return False
    if family.is_flux:
        # FLUX.1's 12B transformer: activations of 57 blocks at 4096 image tokens are what does not fit.
        return True
    import torch

    total = torch.cuda.get_device_properties(runtime.device).total_memory
    return total < 16 * 1024**3


# --- cache and loop --------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """Everything the loop reads that does not change from step to step, computed once."""

    instance: EncodedImages
    classes: EncodedImages | None  # class-images prior only
    prompt_ids: dict[str, Any]  # [instance prompt, class prompt] per tokenizer
    embeds: PromptEmbeds | None  # cached when no text encoder trains (FLUX's T5 is the costliest part otherwise)
    base_embeds: PromptEmbeds | None  # the frozen text encoders' [instance, class] (output preservation's target)


def cache_inputs(pipe, spec: TrainSpec, resolution: int, method: str, class_pictures: list[Image.Image],
                 text_encoders: list) -> tuple[Prepared, list]:
    """VAE latents of every picture and the prompts' embeddings, then fresh LoRA adapters (its param groups)."""
    import torch

    instance = encode_images(pipe, spec.photos, resolution)
    classes = encode_images(pipe, class_pictures, resolution) if class_pictures else None
    prompt_ids = tokenize(pipe, [spec.instance_prompt, spec.class_prompt])
    base_embeds = None
    if method == "output":
        with torch.no_grad():  # before any adapter exists: the base model's own text encoders
            base_embeds = encode(pipe, prompt_ids).detached()
    torch.manual_seed(spec.seed)  # LoRA's initial weights: the same spec trains the same LoRA
    groups = add_lora(pipe, spec)
    embeds = None
    if not text_encoders:
        embeds = base_embeds
        if embeds is None:
            with torch.no_grad():
                embeds = encode(pipe, prompt_ids).detached()
    return Prepared(instance, classes, prompt_ids, embeds, base_embeds), groups


@dataclass
class Loop:
    """The optimisation loop's fixed parts; `run(start, total)` steps from one step index to another."""

    pipe: Any
    spec: TrainSpec
    runtime: Any
    prepared: Prepared
    method: str
    resolution: int
    optimizer: Any
    params: list
    report: ProgressFn
    should_stop: StopFn | None
    pause_point: Callable[[], None] | None
    checkpoint: Callable[[int], None]
    _lora_layers: list | None = field(default=None, init=False, repr=False)

    def step_losses(self, step: int, objective: Objective):
        """(loss, instance loss, class loss or None) of one step, with gradients."""
        import torch

        p, family = self.prepared, family_of(self.pipe)
        classes = p.classes if self.method == "class-images" else None
        batch = step_batch(step, self.spec.seed, p.instance, classes, objective.num_timesteps, family)
        if self.method == "output":
            batch = with_class_row(batch)
        rows = batch.latents.shape[0]
        embeds = p.embeds.rows(rows) if p.embeds is not None else encode(
            self.pipe, {k: v[:rows] for k, v in p.prompt_ids.items()})
        time_ids = time_ids_for(self.pipe, self.spec, batch, self.resolution, self.method)
        if self.method != "output":
            return combined_loss(objective.per_example(self.pipe, batch, embeds, time_ids), self.spec.prior_loss_weight)
        noised = objective.noise(self.pipe, batch)
        if self._lora_layers is None:  # found once: the adapters do not change while the loop runs
            self._lora_layers = lora_layers(denoiser(self.pipe))
        with torch.no_grad(), lora_off(denoiser(self.pipe), self._lora_layers):
            base = objective.predict(self.pipe, noised, p.base_embeds, time_ids, rows=slice(1, 2))
        noised.target = torch.cat([noised.target[:1].float(), base.float()])
        per_example = objective.loss(objective.predict(self.pipe, noised, embeds, time_ids), noised)
        return combined_loss(per_example, self.spec.prior_loss_weight)

    def run(self, start: int, total: int) -> float | None:
        import torch

        objective = objective_for(self.pipe, self.runtime)
        scaler = None
        if self.runtime.is_cuda and self.runtime.dtype == torch.float16:
            scaler = torch.amp.GradScaler("cuda")
        last_loss: float | None = None
        started, timed = time.monotonic(), 0
        for step in range(start, total):
            if self.should_stop and self.should_stop():
                self.checkpoint(step)
                raise TrainingStopped(step)
            loss, instance_loss, class_loss = self.step_losses(step, objective)
            self.optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.params, 1.0)
                scaler.step(self.optimizer)
                scaler.update()
            else:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.params, 1.0)
                self.optimizer.step()
            # One host-device synchronisation per step: the three figures come back together.
            figures = torch.stack([loss.detach(), instance_loss.detach(),
                                   (class_loss if class_loss is not None else loss).detach()]).float().tolist()
            last_loss = figures[0]
            if not math.isfinite(last_loss):
                raise FloatingPointError(f"training diverged at step {step + 1} (loss {last_loss})")
            done, timed = step + 1, timed + 1
            eta = (time.monotonic() - started) / timed * (total - done)
            self.report(progress("training", done, total, round(eta, 1), loss=round(last_loss, 6),
                                 instance_loss=round(figures[1], 6),
                                 class_loss=None if class_loss is None else round(figures[2], 6)))
            if self.spec.checkpoint_every and done % self.spec.checkpoint_every == 0 and done < total:
                self.checkpoint(done)
            if self.pause_point is not None and done < total:
                self.pause_point()
        return last_loss
