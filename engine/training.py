"""DreamBooth-LoRA training: `train(spec, on_progress, should_stop)` in four steps (data → cache → loop → save).

One loop for every family; what differs lives in engine.conditioning (what the denoiser reads about a prompt),
engine.objectives (noising, target and loss) and engine.families (targets, defaults, export names).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from engine import lora_files
from engine.base_model import remove_lora  # lives with the base model; callers also import it from here
from engine.class_images import Stopped, ensure_class_images
from engine.conditioning import PromptEmbeds, encode, tokenize
from engine.detection import family_of
from engine.families import SD1, Family
from engine.lora_files import ADAPTER
from engine.objectives import EncodedImages, Objective, StepBatch, sdxl_time_ids, step_batch
from engine.photos import crop_geometry
from engine.tokens import class_prompt, instance_prompt
from storage.files import write_atomic_with

log = logging.getLogger(__name__)

ProgressFn = Callable[[dict], None]
StopFn = Callable[[], bool]


class TrainingStopped(Stopped):
    """should_stop() turned true; a checkpoint of the finished steps was written first."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped at step {step}")
        self.step = step


# --- defaults, from the photo count and the family -----------------------------------------------------------------


def default_steps(photo_count: int, family: Family = SD1) -> int:
    """About 100 passes over each photo, kept within the family's range (300..1500 for every family now).

    diffusers' DreamBooth-LoRA recipes train their 5-photo examples for 500 steps at lr 1e-4 (README.md,
    README_sdxl.md, README_flux.md alike), i.e. 100 passes per photo. Around 300 steps (three to five photos) is
    where a small set sits between under-fitting (identity not learnt) and over-fitting (pose, background and
    lighting copied into every picture); past ~1500 steps a LoRA memorises even a 20-photo set.
    """
    return max(family.min_steps, min(family.max_steps_train, family.steps_per_photo * max(1, photo_count)))


def default_rank(photo_count: int, family: Family = SD1) -> int:
    # The recipes' rank 4 holds one face or object on SD's UNet; a larger set carries more variation worth keeping.
    return family.rank_small_set if photo_count <= 8 else family.rank_large_set


# DreamBooth's paper weights the prior-preservation loss 1.0 (every recipe's --prior_loss_weight default).
DEFAULT_PRIOR_LOSS_WEIGHT = 1.0
# The recipes' LoRA learning rate; text-encoder LoRA is kept at half of it, it drifts faster.
DEFAULT_LEARNING_RATE = 1e-4


@dataclass
class TrainSpec:
    photos: list[Image.Image]  # already squared to `resolution` (engine.photos; they carry their crop geometry)
    class_word: str
    token: str
    output_dir: Path
    base_model: Path | None = None  # used when no pipeline is handed to train()
    class_image_dir: Path | None = None  # None or num_class_images == 0: no prior preservation
    num_class_images: int | None = None  # None: the family's default
    checkpoint_dir: Path | None = None
    # Called with the folder after each checkpoint is written (the worker uploads it to the blob store).
    on_checkpoint: Callable[[Path], None] | None = None
    steps: int | None = None  # None: from the photo count and the family
    learning_rate: float | None = None  # None: the family's (1e-4 for all, the recipes')
    rank: int | None = None
    prior_loss_weight: float = DEFAULT_PRIOR_LOSS_WEIGHT
    train_text_encoder: bool = False  # SD1/SD2: its text encoder; SDXL: both
    checkpoint_every: int = 100
    seed: int = 1234
    sample_seeds: tuple[int, ...] = (1, 2, 3, 4)
    sample_steps: int = 25
    class_image_steps: int | None = None  # None: the family's (and the class-image cache key's)
    gradient_checkpointing: bool | None = None  # None: FLUX on CUDA, or SD on a CUDA GPU under 16 GiB
    device: str = "auto"
    resolution: int | None = None  # None: the base model's own
    # (original height, original width, crop top, crop left) per photo for SDXL's size conditioning; None: what
    # each photo carries from engine.photos (a photo that was never cropped is its own original).
    photo_geometry: list[tuple[int, int, int, int]] | None = None

    def planned_steps(self, family: Family = SD1) -> int:
        return self.steps or default_steps(len(self.photos), family)

    def lora_rank(self, family: Family = SD1) -> int:
        return self.rank or default_rank(len(self.photos), family)

    def lr(self, family: Family = SD1) -> float:
        return self.learning_rate or family.learning_rate

    def class_count(self, family: Family = SD1) -> int:
        return family.class_images if self.num_class_images is None else int(self.num_class_images)

    @property
    def instance_prompt(self) -> str:
        return instance_prompt(self.token, self.class_word)

    @property
    def class_prompt(self) -> str:
        return class_prompt(self.class_word)

    def geometry(self) -> list[tuple[int, int, int, int]]:
        if self.photo_geometry is not None:
            return [tuple(g) for g in self.photo_geometry]
        return [crop_geometry(image).as_tuple() for image in self.photos]

    def signature(self, family: Family = SD1) -> str:
        """What a checkpoint must match to be resumed: same family, photos, token, rank and method."""
        h = hashlib.sha256()
        for image in self.photos:
            h.update(image.tobytes())
        h.update(f"{self.token}|{self.class_word}|{self.lora_rank(family)}|{self.train_text_encoder}".encode())
        h.update(f"{self.prior_loss_weight}|{self.use_prior()}".encode())
        if family is not SD1:
            h.update(f"{family.name}|{self.geometry()}".encode())
        return h.hexdigest()[:16]

    def use_prior(self) -> bool:
        return self.class_image_dir is not None and (self.num_class_images is None or self.num_class_images > 0)


@dataclass
class TrainedLora:
    weights_path: Path
    kohya_path: Path
    sample_paths: list[Path]
    steps: int
    resumed_from: int
    seconds: float
    final_loss: float | None
    params: dict[str, Any] = field(default_factory=dict)


# --- step 1: data ---------------------------------------------------------------------------------------------


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
    # SDXL's (and FLUX's) stock VAE produces inf/NaN in fp16; its config says so with force_upcast, and the SDXL
    # recipe keeps it in fp32 unless a fixed VAE is given (README_sdxl.md). bf16 has fp32's range: no upcast.
    upcast = vae.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
    if upcast:
        vae.to(torch.float32)
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch):
                pixels = _to_tensor(images[start : start + batch], resolution).to(vae.device, vae.dtype)
                dist = vae.encode(pixels).latent_dist
                means.append(dist.mean.float().cpu())
                stds.append(dist.std.float().cpu())
    finally:
        if upcast:
            vae.to(torch.float16)
    return EncodedImages(torch.cat(means), torch.cat(stds))


# --- step 2 and 3: the loop ------------------------------------------------------------------------------------


def combined_loss(per_example, prior_loss_weight: float):
    """DreamBooth's objective: the instance loss plus prior_loss_weight times the class (prior) loss."""
    instance_loss = per_example[0]
    if per_example.shape[0] < 2:
        return instance_loss, instance_loss, None
    class_loss = per_example[1]
    return instance_loss + prior_loss_weight * class_loss, instance_loss, class_loss


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


def _wants_checkpointing(spec: TrainSpec, runtime, family: Family) -> bool:
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


def _resolution(pipe) -> int:
    from engine.base_model import training_resolution

    return training_resolution(pipe)


def _objective(pipe, runtime) -> Objective:
    from engine.samplers import own_scheduler_config

    return Objective(family_of(pipe), own_scheduler_config(pipe), runtime)


def _time_ids(pipe, spec: TrainSpec, batch: StepBatch, resolution: int):
    """SDXL's time_ids for a batch: the instance photo's own geometry; class images are drawn at the target size."""
    if family_of(pipe).name != "sdxl":
        return None
    geometry = spec.geometry()
    rows = [geometry[batch.picks[0]]]
    if len(batch.picks) > 1:
        rows.append((resolution, resolution, 0, 0))
    return sdxl_time_ids(rows, resolution)


def evaluation_loss(pipe, spec: TrainSpec, runtime, seed: int = 99, examples: int = 4) -> float:
    """Instance loss on a fixed batch (same latents, noise and timesteps each call): lower means learnt."""
    import torch

    family = family_of(pipe)
    resolution = spec.resolution or _resolution(pipe)
    encoded = encode_images(pipe, spec.photos, resolution)
    objective = _objective(pipe, runtime)
    with torch.no_grad():
        embeds = encode(pipe, tokenize(pipe, [spec.instance_prompt]))
        losses = []
        for i in range(examples):
            batch = step_batch(i, seed, encoded, None, objective.num_timesteps, family)
            losses.append(objective.per_example(pipe, batch, embeds, _time_ids(pipe, spec, batch, resolution))[0])
    return float(torch.stack(losses).mean())


def train(
    spec: TrainSpec,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    *,
    pipe=None,
    runtime=None,
    pause_point: Callable[[], None] | None = None,
) -> TrainedLora:
    """Train a DreamBooth-LoRA for spec.token/spec.class_word and write its files into spec.output_dir.

    With `pipe` given (the worker's loaded base model) the trained adapter stays active in it afterwards,
    so the caller can compare or draw; `remove_lora(pipe)` restores the base model. `pause_point` is called
    at every step boundary: the worker runs waiting draws there, so a /draw never waits for a whole training.
    """
    import torch

    from engine.base_model import load_base_pipeline, pick_runtime

    started = time.monotonic()
    runtime = runtime or pick_runtime(spec.device)
    if pipe is None:
        if spec.base_model is None:
            raise ValueError("TrainSpec.base_model is needed when no pipeline is given")
        pipe = load_base_pipeline(spec.base_model, runtime)
    family = family_of(pipe)
    remove_lora(pipe)
    if not spec.photos:
        raise ValueError("no usable photos to train on")
    resolution = spec.resolution or _resolution(pipe)
    total = spec.planned_steps(family)
    output_dir = Path(spec.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    report = on_progress or (lambda _p: None)
    text_encoders = trained_text_encoders(pipe, spec)  # refuses text-encoder LoRA where the family has none

    # Step 1: data. Class images come from the base model itself, before any LoRA is attached.
    class_encoded = None
    if spec.use_prior():
        assert spec.class_image_dir is not None
        paths = ensure_class_images(
            pipe,
            spec.class_image_dir,
            spec.class_prompt,
            spec.class_count(family),
            resolution,
            steps=spec.class_image_steps,
            on_progress=report,
            should_stop=should_stop,
            pause_point=pause_point,
        )
        class_pictures = [Image.open(p).convert("RGB") for p in paths]
        class_encoded = encode_images(pipe, class_pictures, resolution)

    # Step 2: cache. The VAE never changes, so each picture is encoded once; the text encoders only when frozen
    # (FLUX's T5 is by far the costliest part of a step otherwise).
    instance_encoded = encode_images(pipe, spec.photos, resolution)
    prompt_ids = tokenize(pipe, [spec.instance_prompt, spec.class_prompt])
    torch.manual_seed(spec.seed)  # LoRA's initial weights: the same spec trains the same LoRA
    param_groups = add_lora(pipe, spec)
    cached: PromptEmbeds | None = None
    if not text_encoders:
        with torch.no_grad():
            cached = encode(pipe, prompt_ids).detached()

    objective = _objective(pipe, runtime)
    model = denoiser(pipe)
    optimizer = torch.optim.AdamW(param_groups, weight_decay=1e-2)
    scaler = torch.amp.GradScaler("cuda") if runtime.is_cuda and runtime.dtype == torch.float16 else None
    checkpointing = _wants_checkpointing(spec, runtime, family)
    if checkpointing:
        model.enable_gradient_checkpointing()

    modules = {family.denoiser: model, **dict(text_encoders)}
    signature = spec.signature(family)
    start_step = 0
    ckpt = lora_files.latest_checkpoint(spec.checkpoint_dir)
    if ckpt is not None and ckpt.signature == signature:
        lora_files.load_checkpoint(ckpt, modules, optimizer, runtime.device)
        start_step, total = ckpt.step, ckpt.total
        log.info("resuming from checkpoint at step %d of %d", start_step, total)

    def checkpoint(step: int) -> None:
        if spec.checkpoint_dir is not None:
            lora_files.save_checkpoint(spec.checkpoint_dir, step, total, signature, modules, optimizer)
            if spec.on_checkpoint is not None:
                spec.on_checkpoint(Path(spec.checkpoint_dir))

    # Step 3: the loop. Each step: one instance example and (with prior preservation) one class example.
    params = [p for g in param_groups for p in g["params"]]
    model.train()
    last_loss: float | None = None
    loop_started, timed_steps = time.monotonic(), 0
    try:
        for step in range(start_step, total):
            if should_stop and should_stop():
                checkpoint(step)
                raise TrainingStopped(step)
            batch = step_batch(step, spec.seed, instance_encoded, class_encoded, objective.num_timesteps, family)
            rows = batch.latents.shape[0]
            if cached is not None:
                embeds = cached.rows(rows)
            else:
                embeds = encode(pipe, {k: v[:rows] for k, v in prompt_ids.items()})
            per_example = objective.per_example(pipe, batch, embeds, _time_ids(pipe, spec, batch, resolution))
            loss, instance_loss, class_loss = combined_loss(per_example, spec.prior_loss_weight)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
            last_loss = float(loss.detach())
            if not math.isfinite(last_loss):
                raise FloatingPointError(f"training diverged at step {step + 1} (loss {last_loss})")
            done = step + 1
            timed_steps += 1
            per_step = (time.monotonic() - loop_started) / timed_steps
            report(
                {
                    "stage": "training", "step": done, "total": total, "loss": round(last_loss, 6),
                    "eta_s": round(per_step * (total - done), 1),
                    "instance_loss": round(float(instance_loss.detach()), 6),
                    "class_loss": None if class_loss is None else round(float(class_loss.detach()), 6),
                }
            )
            if spec.checkpoint_every and done % spec.checkpoint_every == 0 and done < total:
                checkpoint(done)
            if pause_point is not None and done < total:
                pause_point()
    finally:
        model.eval()
        if checkpointing:
            model.disable_gradient_checkpointing()
        for p in params:
            p.requires_grad_(False)

    # Step 4: save, then show what was learnt.
    weights = lora_files.save_lora(output_dir / "lora.safetensors", pipe)
    kohya = lora_files.save_kohya_lora(output_dir / "lora_kohya.safetensors", pipe, resolution=resolution)
    samples = draw_samples(pipe, spec, output_dir, resolution, report, should_stop)
    return TrainedLora(
        weights_path=weights,
        kohya_path=kohya,
        sample_paths=samples,
        steps=total,
        resumed_from=start_step,
        seconds=round(time.monotonic() - started, 2),
        final_loss=last_loss,
        params={
            "steps": total, "rank": spec.lora_rank(family), "learning_rate": spec.lr(family),
            "prior_loss_weight": spec.prior_loss_weight, "train_text_encoder": spec.train_text_encoder,
            "num_class_images": spec.class_count(family) if spec.use_prior() else 0, "resolution": resolution,
            "photos": len(spec.photos), "seed": spec.seed, "family": family.name,
            "objective": objective.prediction_type,
        },
    )


def draw_samples(pipe, spec: TrainSpec, folder: Path, resolution: int, report: ProgressFn, should_stop: StopFn | None) -> list[Path]:
    """`a photo of <token> <class>` at fixed seeds, so two trainings can be compared picture by picture."""
    import torch

    from engine.drawing import render

    family = family_of(pipe)
    paths = []
    total = len(spec.sample_seeds)
    report({"stage": "samples", "step": 0, "total": total, "loss": None, "eta_s": None})
    for i, seed in enumerate(spec.sample_seeds):
        image = render(pipe, [spec.instance_prompt], [torch.Generator("cpu").manual_seed(seed)],
                       steps=spec.sample_steps, guidance=family.guidance, width=resolution, height=resolution,
                       sampler=family.default_sampler)[0]
        path = write_atomic_with(folder / f"sample_{seed}.png", lambda tmp, im=image: im.save(tmp, format="PNG"))
        paths.append(path)
        report({"stage": "samples", "step": i + 1, "total": total, "loss": None, "eta_s": None})
    return paths
