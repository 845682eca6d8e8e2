"""DreamBooth-LoRA training as a library call: `train(spec, on_progress, should_stop)` and what it needs to know.

train() runs named steps, each reported to `on_phase` so a caller can time it: class_images (the paper's prior
only) → prepare (the pictures) → cache (latents, embeddings, LoRA) → train (the loop) → save → samples →
report_card. The steps live in engine.train_steps and engine.post_training; the CLI and the worker are shells.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from engine import lora_files
from engine.class_images import ensure_class_images
from engine.detection import family_of
from engine.families import SD1, Family
from engine.photos import crop_geometry
from engine.post_training import DrawPlan, draw_samples, make_report_card
from engine.tokens import class_prompt, instance_prompt
from engine.train_steps import (  # noqa: F401  (the names callers and tests reach through engine.training)
    PRIOR_METHODS,
    Loop,
    ProgressFn,
    StopFn,
    TrainingStopped,
    TrainProgress,
    add_lora,
    cache_inputs,
    combined_loss,
    denoiser,
    encode_images,
    has_lora,
    objective_for,
    remove_lora,
    time_ids_for,
    trained_text_encoders,
    wants_checkpointing,
)

log = logging.getLogger(__name__)

PhaseFn = Callable[[str], None]
# The phases train() announces to on_phase, in order (the bench's time-to-model figures are keyed by them).
PHASES: tuple[str, ...] = ("class_images", "prepare", "cache", "train", "save", "samples", "report_card")


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


def prior_for(family: Family, setting: str | None = None) -> str:
    """The prior method a training uses: PRIOR when set, else the family's."""
    method = setting or family.prior
    if method not in PRIOR_METHODS:
        raise ValueError(f"unknown prior method {method!r}; choose from {', '.join(PRIOR_METHODS)}")
    return method


@dataclass
class TrainSpec:
    photos: list[Image.Image]  # already squared to `resolution` (engine.photos; they carry their crop geometry)
    class_word: str
    token: str
    output_dir: Path
    base_model: Path | None = None  # used when no pipeline is handed to train()
    # Prior preservation (engine.train_steps.PRIOR_METHODS): class-images, output or off; None: the family's.
    prior: str | None = None
    class_image_dir: Path | None = None  # class-images only; None (or num_class_images == 0) turns that prior off
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
    sample_steps: int | None = None  # samples and report card; None: the family's draw steps
    report_card: bool = True  # draw the report card (before/after of the bare class prompt, with the drift)
    # Where the report card's "before" pictures are kept for every training of this class on this base model
    # (storage's report_before_prefix); None: drawn for this card alone.
    before_dir: Path | None = None
    class_image_steps: int | None = None  # None: the family's (and the class-image cache key's)
    gradient_checkpointing: bool | None = None  # None: FLUX on CUDA, or SD on a CUDA GPU under 16 GiB
    device: str = "auto"
    resolution: int | None = None  # None: the family's training resolution (engine.base_model.train_resolution)
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
        method = self.prior_method(family)
        # The first methods were "prior on" (class images) or "off": their checkpoints keep matching.
        h.update(f"{self.prior_loss_weight}|{method != 'off'}".encode())
        if method == "output":
            h.update(b"|output")
        if family is not SD1:
            h.update(f"{family.name}|{self.geometry()}".encode())
        return h.hexdigest()[:16]

    def prior_method(self, family: Family = SD1) -> str:
        method = prior_for(family, self.prior)
        if method == "class-images" and (self.class_image_dir is None or self.class_count(family) <= 0):
            return "off"
        return method

    def use_prior(self) -> bool:
        return self.prior_method() != "off"


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
    report_card_path: Path | None = None
    class_drift: float | None = None


def train_resolution(pipe, spec: TrainSpec) -> int:
    from engine.base_model import train_resolution as family_resolution

    return spec.resolution or family_resolution(pipe)


def _objective(pipe, runtime):
    return objective_for(pipe, runtime)


def _time_ids(pipe, spec: TrainSpec, batch, resolution: int):
    return time_ids_for(pipe, spec, batch, resolution)


def evaluation_loss(pipe, spec: TrainSpec, runtime, seed: int = 99, examples: int = 4) -> float:
    """Instance loss on a fixed batch (same latents, noise and timesteps each call): lower means learnt."""
    import torch

    from engine.conditioning import encode, tokenize
    from engine.objectives import step_batch

    family = family_of(pipe)
    resolution = train_resolution(pipe, spec)
    encoded = encode_images(pipe, spec.photos, resolution)
    objective = objective_for(pipe, runtime)
    with torch.no_grad():
        embeds = encode(pipe, tokenize(pipe, [spec.instance_prompt]))
        losses = []
        for i in range(examples):
            batch = step_batch(i, seed, encoded, None, objective.num_timesteps, family)
            losses.append(objective.per_example(pipe, batch, embeds, time_ids_for(pipe, spec, batch, resolution))[0])
    return float(torch.stack(losses).mean())


def train(
    spec: TrainSpec,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    *,
    pipe=None,
    runtime=None,
    pause_point: Callable[[], None] | None = None,
    on_phase: PhaseFn | None = None,
) -> TrainedLora:
    """Train a DreamBooth-LoRA for spec.token/spec.class_word and write its files into spec.output_dir.

    With `pipe` given (the worker's loaded base model) the trained adapter stays active in it afterwards,
    so the caller can compare or draw; `remove_lora(pipe)` restores the base model. `pause_point` is called
    at every step boundary and between post-training draws: the worker runs waiting draws there, so a /draw
    never waits for a whole training. `on_phase(name)` is called as each of PHASES begins.
    """
    from engine.base_model import load_base_pipeline, pick_runtime

    started = time.monotonic()
    phase = on_phase or (lambda _name: None)
    report = on_progress or (lambda _p: None)
    runtime = runtime or pick_runtime(spec.device)
    if pipe is None:
        if spec.base_model is None:
            raise ValueError("TrainSpec.base_model is needed when no pipeline is given")
        pipe = load_base_pipeline(spec.base_model, runtime)
    family = family_of(pipe)
    remove_lora(pipe)
    if not spec.photos:
        raise ValueError("no usable photos to train on")
    resolution = train_resolution(pipe, spec)
    method = spec.prior_method(family)
    output_dir = Path(spec.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    text_encoders = trained_text_encoders(pipe, spec)  # refuses text-encoder LoRA where the family has none

    phase("class_images")  # from the base model itself, before any LoRA is attached
    class_paths = _class_images(pipe, spec, family, method, resolution, report, should_stop, pause_point)
    phase("prepare")
    class_pictures = [Image.open(p).convert("RGB") for p in class_paths]
    phase("cache")
    prepared, groups = cache_inputs(pipe, spec, resolution, method, class_pictures, text_encoders)
    phase("train")
    steps, start_step, last_loss = _loop(pipe, spec, runtime, family, prepared, groups, method, resolution,
                                         text_encoders, report, should_stop, pause_point)
    phase("save")
    weights = lora_files.save_lora(output_dir / "lora.safetensors", pipe)
    kohya = lora_files.save_kohya_lora(output_dir / "lora_kohya.safetensors", pipe, resolution=resolution)
    phase("samples")
    plan = DrawPlan.for_pipe(pipe, resolution, spec.sample_steps, pause_point=pause_point, should_stop=should_stop)
    samples = draw_samples(pipe, spec.instance_prompt, spec.sample_seeds, output_dir, plan, report)
    phase("report_card")
    card = make_report_card(pipe, spec.class_word, output_dir, plan, report, spec.before_dir) if spec.report_card \
        else None
    phase("done")
    params = {
        "steps": steps, "rank": spec.lora_rank(family), "learning_rate": spec.lr(family),
        "prior": method, "prior_loss_weight": spec.prior_loss_weight, "train_text_encoder": spec.train_text_encoder,
        "num_class_images": len(class_paths), "resolution": resolution, "photos": len(spec.photos),
        "seed": spec.seed, "family": family.name, "objective": objective_for(pipe, runtime).prediction_type,
    }
    if card is not None:
        params["class_drift"] = round(card.drift, 4)
    return TrainedLora(
        weights_path=weights, kohya_path=kohya, sample_paths=samples, steps=steps, resumed_from=start_step,
        seconds=round(time.monotonic() - started, 2), final_loss=last_loss, params=params,
        report_card_path=None if card is None else card.path, class_drift=None if card is None else card.drift,
    )


def _class_images(pipe, spec: TrainSpec, family: Family, method: str, resolution: int, report: ProgressFn,
                  should_stop: StopFn | None, pause_point) -> list[Path]:
    if method != "class-images":
        return []
    assert spec.class_image_dir is not None
    return ensure_class_images(pipe, spec.class_image_dir, spec.class_prompt, spec.class_count(family), resolution,
                               steps=spec.class_image_steps, on_progress=report, should_stop=should_stop,
                               pause_point=pause_point)


def _loop(pipe, spec: TrainSpec, runtime, family: Family, prepared, groups: list, method: str, resolution: int,
          text_encoders: list, report: ProgressFn, should_stop: StopFn | None, pause_point):
    """The optimiser, a checkpoint to resume from when one of this spec exists, and the steps; (total, start,
    last loss). The trained modules leave it in eval mode with every weight frozen again."""
    import torch

    total = spec.planned_steps(family)
    model = denoiser(pipe)
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-2)
    checkpointing = wants_checkpointing(spec, runtime, family)
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

    params = [p for g in groups for p in g["params"]]
    loop = Loop(pipe, spec, runtime, prepared, method, resolution, optimizer, params, report, should_stop,
                pause_point, checkpoint)
    model.train()
    try:
        last_loss = loop.run(start_step, total)
    finally:
        model.eval()
        if checkpointing:
            model.disable_gradient_checkpointing()
        for p in params:
            p.requires_grad_(False)
    return total, start_step, last_loss
