"""DreamBooth-LoRA training: `train(spec, on_progress, should_stop)` in four steps (data → cache → loop → save)."""

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
from engine.class_images import Stopped, ensure_class_images
from engine.lora_files import ADAPTER, TEXT_ENCODER_TARGETS, UNET_TARGETS
from engine.tokens import class_prompt, instance_prompt

log = logging.getLogger(__name__)

ProgressFn = Callable[[dict], None]
StopFn = Callable[[], bool]


class TrainingStopped(Stopped):
    """should_stop() turned true; a checkpoint of the finished steps was written first."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped at step {step}")
        self.step = step


# --- defaults, from the photo count ------------------------------------------------------------------------------


def default_steps(photo_count: int) -> int:
    """About 100 passes over each photo, kept within 300..1500 steps.

    diffusers' DreamBooth-LoRA recipe trains its 5-photo example for 500 steps at lr 1e-4, i.e. 100 passes per
    photo. Around 300 steps (three to five photos) is where a small set sits between under-fitting (identity
    not learnt) and over-fitting (pose, background and lighting copied into every picture); past ~1500 steps
    a LoRA memorises even a 20-photo set.
    """
    return max(300, min(1500, 100 * max(1, photo_count)))


def default_rank(photo_count: int) -> int:
    # Rank 4 (the recipe's default) holds one face or object; a larger set carries more variation worth keeping.
    return 4 if photo_count <= 8 else 8


# DreamBooth's paper weights the prior-preservation loss 1.0 and uses ~200 class images per subject.
DEFAULT_PRIOR_LOSS_WEIGHT = 1.0
# The recipe's LoRA learning rate; text-encoder LoRA is kept at half of it, it drifts faster.
DEFAULT_LEARNING_RATE = 1e-4


@dataclass
class TrainSpec:
    photos: list[Image.Image]  # already squared to `resolution` (engine.photos)
    class_word: str
    token: str
    output_dir: Path
    base_model: Path | None = None  # used when no pipeline is handed to train()
    class_image_dir: Path | None = None  # None or num_class_images == 0: no prior preservation
    num_class_images: int = 200
    checkpoint_dir: Path | None = None
    steps: int | None = None
    learning_rate: float = DEFAULT_LEARNING_RATE
    rank: int | None = None
    prior_loss_weight: float = DEFAULT_PRIOR_LOSS_WEIGHT
    train_text_encoder: bool = False
    checkpoint_every: int = 100
    seed: int = 1234
    sample_seeds: tuple[int, ...] = (1, 2, 3, 4)
    sample_steps: int = 25
    class_image_steps: int = 25
    gradient_checkpointing: bool | None = None  # None: on CUDA when the GPU has under 16 GiB
    device: str = "auto"
    resolution: int | None = None  # None: the base model's own

    def planned_steps(self) -> int:
        return self.steps or default_steps(len(self.photos))

    def lora_rank(self) -> int:
        return self.rank or default_rank(len(self.photos))

    @property
    def instance_prompt(self) -> str:
        return instance_prompt(self.token, self.class_word)

    @property
    def class_prompt(self) -> str:
        return class_prompt(self.class_word)

    def signature(self) -> str:
        """What a checkpoint must match to be resumed: same photos, token, rank and method."""
        h = hashlib.sha256()
        for image in self.photos:
            h.update(image.tobytes())
        h.update(f"{self.token}|{self.class_word}|{self.lora_rank()}|{self.train_text_encoder}".encode())
        h.update(f"{self.prior_loss_weight}|{self.use_prior()}".encode())
        return h.hexdigest()[:16]

    def use_prior(self) -> bool:
        return self.class_image_dir is not None and self.num_class_images > 0


@dataclass
class TrainResult:
    weights_path: Path
    kohya_path: Path
    sample_paths: list[Path]
    steps: int
    resumed_from: int
    seconds: float
    final_loss: float | None
    params: dict[str, Any] = field(default_factory=dict)


# --- step 1: data ---------------------------------------------------------------------------------------------


@dataclass
class EncodedImages:
    """VAE posteriors of a set of pictures (mean and std), so each step can draw a fresh latent cheaply."""

    mean: Any
    std: Any

    def __len__(self) -> int:
        return int(self.mean.shape[0])


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
    import torch

    means, stds = [], []
    vae = pipe.vae
    with torch.no_grad():
        for start in range(0, len(images), batch):
            pixels = _to_tensor(images[start : start + batch], resolution).to(vae.device, vae.dtype)
            dist = vae.encode(pixels).latent_dist
            means.append(dist.mean.float().cpu())
            stds.append(dist.std.float().cpu())
    return EncodedImages(torch.cat(means), torch.cat(stds))


def prompt_ids(pipe, prompt: str):
    tok = pipe.tokenizer
    return tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids


def embed(pipe, ids):
    return pipe.text_encoder(ids.to(pipe.text_encoder.device))[0]


# --- step 2 and 3: the loop ------------------------------------------------------------------------------------


@dataclass
class StepBatch:
    latents: Any  # [B, C, h, w] on CPU, float32; row 0 the instance, row 1 (if any) the class example
    noise: Any
    timesteps: Any


def _permutation(n: int, seed: int):
    import torch

    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def step_batch(step: int, seed: int, instance: EncodedImages, classes: EncodedImages | None, timesteps: int) -> StepBatch:
    """Everything random about one step comes from (seed, step): a resumed run repeats the same steps."""
    import torch

    def pick(images: EncodedImages, salt: int) -> int:
        n = len(images)
        epoch, offset = divmod(step, n)
        return int(_permutation(n, seed * 7919 + salt * 104729 + epoch)[offset])

    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    chosen = [(instance, pick(instance, 1))]
    if classes is not None:
        chosen.append((classes, pick(classes, 2)))
    latents = torch.stack(
        [imgs.mean[i] + imgs.std[i] * torch.randn(imgs.mean[i].shape, generator=gen) for imgs, i in chosen]
    )
    noise = torch.randn(latents.shape, generator=gen)
    ts = torch.randint(0, timesteps, (latents.shape[0],), generator=gen)
    return StepBatch(latents, noise, ts)


def per_example_loss(pipe, noise_scheduler, batch: StepBatch, embeddings, runtime) -> Any:
    """MSE between the UNet's prediction and its target, one value per example of the batch."""
    import torch.nn.functional as F

    device = runtime.device
    scale = pipe.vae.config.scaling_factor
    latents = (batch.latents * scale).to(device)
    noise = batch.noise.to(device)
    timesteps = batch.timesteps.to(device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    with _autocast(runtime):
        prediction = pipe.unet(noisy.to(pipe.unet.dtype), timesteps, embeddings.to(pipe.unet.dtype)).sample
    loss = F.mse_loss(prediction.float(), target.float(), reduction="none")
    return loss.mean(dim=list(range(1, loss.ndim)))


def _autocast(runtime):
    import contextlib

    import torch

    if runtime.is_cuda and runtime.dtype != torch.float32:
        return torch.autocast("cuda", dtype=runtime.dtype)
    return contextlib.nullcontext()


def combined_loss(per_example, prior_loss_weight: float):
    """DreamBooth's objective: the instance loss plus prior_loss_weight times the class (prior) loss."""
    instance_loss = per_example[0]
    if per_example.shape[0] < 2:
        return instance_loss, instance_loss, None
    class_loss = per_example[1]
    return instance_loss + prior_loss_weight * class_loss, instance_loss, class_loss


def add_lora(pipe, spec: TrainSpec) -> list:
    """Fresh LoRA adapters on the UNet attention (and optionally the text encoder); returns the trainable params."""
    from peft import LoraConfig

    rank = spec.lora_rank()
    # alpha = rank: scale 1, so the learning rate means the same at any rank.
    unet_config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=UNET_TARGETS)
    pipe.unet.add_adapter(unet_config, adapter_name=ADAPTER)
    pipe.unet.set_adapter(ADAPTER)
    groups = [{"params": _trainable(pipe.unet), "lr": spec.learning_rate}]
    if spec.train_text_encoder:
        te_config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=TEXT_ENCODER_TARGETS)
        pipe.text_encoder.add_adapter(te_config, adapter_name=ADAPTER)
        pipe.text_encoder.set_adapter(ADAPTER)
        groups.append({"params": _trainable(pipe.text_encoder), "lr": spec.learning_rate / 2})
    return groups


def _trainable(module) -> list:
    import torch

    params = []
    for name, param in module.named_parameters():
        if f"lora_A.{ADAPTER}" in name or f"lora_B.{ADAPTER}" in name:
            # Trainable weights stay float32 even when the frozen model is bf16/fp16: Adam's tiny updates
            # would round away otherwise.
            param.data = param.data.to(torch.float32)
            param.requires_grad_(True)
            params.append(param)
        else:
            param.requires_grad_(False)
    return params


def remove_lora(pipe) -> None:
    """Take every LoRA out of the pipeline: the base model again, bit for bit."""
    if getattr(pipe.unet, "peft_config", None) or getattr(pipe.text_encoder, "peft_config", None):
        pipe.unload_lora_weights()


def _wants_checkpointing(spec: TrainSpec, runtime) -> bool:
    if spec.gradient_checkpointing is not None:
        return spec.gradient_checkpointing
    if not runtime.is_cuda:
        return False
    import torch

    total = torch.cuda.get_device_properties(runtime.device).total_memory
    return total < 16 * 1024**3


def evaluation_loss(pipe, spec: TrainSpec, runtime, seed: int = 99, examples: int = 4) -> float:
    """Instance loss on a fixed batch (same latents, noise and timesteps each call): lower means learnt."""
    import torch
    from diffusers import DDPMScheduler

    resolution = spec.resolution or _resolution(pipe)
    encoded = encode_images(pipe, spec.photos, resolution)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    with torch.no_grad():
        emb = embed(pipe, prompt_ids(pipe, spec.instance_prompt))
        losses = [
            per_example_loss(pipe, scheduler, step_batch(i, seed, encoded, None, scheduler.config.num_train_timesteps), emb, runtime)[0]
            for i in range(examples)
        ]
    return float(torch.stack(losses).mean())


def _resolution(pipe) -> int:
    from engine.base_model import training_resolution

    return training_resolution(pipe)


def train(
    spec: TrainSpec,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    *,
    pipe=None,
    runtime=None,
    pause_point: Callable[[], None] | None = None,
) -> TrainResult:
    """Train a DreamBooth-LoRA for spec.token/spec.class_word and write its files into spec.output_dir.

    With `pipe` given (the worker's loaded base model) the trained adapter stays active in it afterwards,
    so the caller can compare or draw; `remove_lora(pipe)` restores the base model. `pause_point` is called
    at every step boundary: the worker runs waiting draws there, so a /draw never waits for a whole training.
    """
    import torch
    from diffusers import DDPMScheduler

    from engine.base_model import load_base_pipeline, pick_runtime

    started = time.monotonic()
    runtime = runtime or pick_runtime(spec.device)
    if pipe is None:
        if spec.base_model is None:
            raise ValueError("TrainSpec.base_model is needed when no pipeline is given")
        pipe = load_base_pipeline(spec.base_model, runtime)
    remove_lora(pipe)
    if not spec.photos:
        raise ValueError("no usable photos to train on")
    resolution = spec.resolution or _resolution(pipe)
    total = spec.planned_steps()
    output_dir = Path(spec.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    report = on_progress or (lambda _p: None)

    # Step 1: data. Class images come from the base model itself, before any LoRA is attached.
    class_encoded = None
    if spec.use_prior():
        assert spec.class_image_dir is not None
        paths = ensure_class_images(
            pipe,
            spec.class_image_dir,
            spec.class_prompt,
            spec.num_class_images,
            resolution,
            steps=spec.class_image_steps,
            on_progress=report,
            should_stop=should_stop,
            pause_point=pause_point,
        )
        class_pictures = [Image.open(p).convert("RGB") for p in paths]
        class_encoded = encode_images(pipe, class_pictures, resolution)

    # Step 2: cache. The VAE never changes, so each picture is encoded once; the text encoder only when frozen.
    instance_encoded = encode_images(pipe, spec.photos, resolution)
    instance_ids = prompt_ids(pipe, spec.instance_prompt)
    class_ids = prompt_ids(pipe, spec.class_prompt)
    torch.manual_seed(spec.seed)  # LoRA's initial weights: the same spec trains the same LoRA
    param_groups = add_lora(pipe, spec)
    cached_embeddings = None
    if not spec.train_text_encoder:
        with torch.no_grad():
            cached_embeddings = torch.cat([embed(pipe, instance_ids), embed(pipe, class_ids)])

    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    optimizer = torch.optim.AdamW(param_groups, weight_decay=1e-2)
    scaler = torch.amp.GradScaler("cuda") if runtime.is_cuda and runtime.dtype == torch.float16 else None
    if _wants_checkpointing(spec, runtime):
        pipe.unet.enable_gradient_checkpointing()

    start_step = 0
    ckpt = lora_files.latest_checkpoint(spec.checkpoint_dir)
    if ckpt is not None and ckpt.signature == spec.signature():
        lora_files.load_checkpoint(ckpt, pipe.unet, pipe.text_encoder, optimizer, runtime.device)
        start_step, total = ckpt.step, ckpt.total
        log.info("resuming from checkpoint at step %d of %d", start_step, total)

    def checkpoint(step: int) -> None:
        if spec.checkpoint_dir is not None:
            lora_files.save_checkpoint(
                spec.checkpoint_dir, step, total, spec.signature(), pipe.unet,
                pipe.text_encoder if spec.train_text_encoder else None, optimizer,
            )

    # Step 3: the loop. Each step: one instance example and (with prior preservation) one class example.
    params = [p for g in param_groups for p in g["params"]]
    pipe.unet.train()
    last_loss: float | None = None
    loop_started, timed_steps = time.monotonic(), 0
    try:
        for step in range(start_step, total):
            if should_stop and should_stop():
                checkpoint(step)
                raise TrainingStopped(step)
            batch = step_batch(step, spec.seed, instance_encoded, class_encoded, noise_scheduler.config.num_train_timesteps)
            if cached_embeddings is not None:
                embeddings = cached_embeddings[: batch.latents.shape[0]]
            else:
                embeddings = embed(pipe, torch.cat([instance_ids, class_ids])[: batch.latents.shape[0]])
            per_example = per_example_loss(pipe, noise_scheduler, batch, embeddings, runtime)
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
        pipe.unet.eval()
        if _wants_checkpointing(spec, runtime):
            pipe.unet.disable_gradient_checkpointing()
        for p in params:
            p.requires_grad_(False)

    # Step 4: save, then show what was learnt.
    te = pipe.text_encoder if spec.train_text_encoder else None
    weights = lora_files.save_diffusers_lora(output_dir / "lora.safetensors", pipe.unet, te)
    kohya = lora_files.save_kohya_lora(output_dir / "lora_kohya.safetensors", pipe.unet, te)
    samples = draw_samples(pipe, spec, output_dir, resolution, report, should_stop)
    return TrainResult(
        weights_path=weights,
        kohya_path=kohya,
        sample_paths=samples,
        steps=total,
        resumed_from=start_step,
        seconds=round(time.monotonic() - started, 2),
        final_loss=last_loss,
        params={
            "steps": total, "rank": spec.lora_rank(), "learning_rate": spec.learning_rate,
            "prior_loss_weight": spec.prior_loss_weight, "train_text_encoder": spec.train_text_encoder,
            "num_class_images": spec.num_class_images if spec.use_prior() else 0, "resolution": resolution,
            "photos": len(spec.photos), "seed": spec.seed,
        },
    )


def draw_samples(pipe, spec: TrainSpec, folder: Path, resolution: int, report: ProgressFn, should_stop: StopFn | None) -> list[Path]:
    """`a photo of <token> <class>` at fixed seeds, so two trainings can be compared picture by picture."""
    import torch

    paths = []
    total = len(spec.sample_seeds)
    report({"stage": "samples", "step": 0, "total": total, "loss": None, "eta_s": None})
    for i, seed in enumerate(spec.sample_seeds):
        with torch.inference_mode():
            image = pipe(
                spec.instance_prompt,
                num_inference_steps=spec.sample_steps,
                height=resolution,
                width=resolution,
                generator=torch.Generator("cpu").manual_seed(seed),
            ).images[0]
        path = folder / f"sample_{seed}.png"
        image.save(path)
        paths.append(path)
        report({"stage": "samples", "step": i + 1, "total": total, "loss": None, "eta_s": None})
    return paths
