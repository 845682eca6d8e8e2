"""What a training draws once its LoRA is saved: the samples and the report card, batched, with pause points.

Both are drawn at the family's own draw steps and sampler (FLUX.1-schnell's 4 steps, not 25), a few pictures per
call, with `pause_point()` between calls so a waiting /draw slips in. The report card's "before" pictures (the bare
class prompt on the base model) are the same for every training of one class on one base model: they are kept in
`before_dir` (storage's report_before_prefix, keyed by base model content, class prompt and resolution) and drawn
only once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from engine.detection import family_of
from engine.metrics import class_drift
from engine.report_card import DRIFT_SEEDS, REPORT_SEEDS, compose
from engine.tokens import class_prompt
from engine.train_steps import ProgressFn, StopFn, progress
from storage.files import write_atomic_with

log = logging.getLogger(__name__)

# Pictures per pipeline call: four at once is most of batching's gain; sixteen would need four times the
# activation memory on a big model.
BATCH = len(REPORT_SEEDS)


@dataclass
class DrawPlan:
    """How the post-training pictures are drawn: the family's steps and sampler unless the caller says."""

    resolution: int
    steps: int
    guidance: float
    sampler: str
    pause_point: Callable[[], None] | None = None
    should_stop: StopFn | None = None

    @classmethod
    def for_pipe(cls, pipe, resolution: int, steps: int | None = None, **kw) -> DrawPlan:
        family = family_of(pipe)
        return cls(resolution, steps or family.draw_steps, family.guidance, family.default_sampler, **kw)

    def draw(self, pipe, prompt: str, seeds: Sequence[int], before_each: Callable[[], None] = lambda: None,
             on_batch: Callable[[int], None] = lambda _n: None) -> list[Image.Image]:
        """`prompt` at each seed, BATCH per call; `before_each` sets the LoRA state again after a pause point."""
        import torch

        from engine.class_images import Stopped
        from engine.drawing import render

        pictures: list[Image.Image] = []
        for start in range(0, len(seeds), BATCH):
            if self.should_stop and self.should_stop():
                raise Stopped("stopped while drawing after training")
            chunk = list(seeds[start : start + BATCH])
            before_each()
            generators = [torch.Generator("cpu").manual_seed(s) for s in chunk]
            pictures += render(pipe, [prompt] * len(chunk), generators, steps=self.steps, guidance=self.guidance,
                               width=self.resolution, height=self.resolution, sampler=self.sampler)
            on_batch(len(pictures))
            if self.pause_point is not None:
                self.pause_point()
        return pictures

    def recipe(self, pipe, prompt: str) -> str:
        parts = {"family": family_of(pipe).name, "prompt": prompt, "resolution": self.resolution,
                 "steps": self.steps, "guidance": self.guidance, "sampler": self.sampler}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def draw_samples(pipe, prompt: str, seeds: Sequence[int], folder: Path, plan: DrawPlan,
                 report: ProgressFn) -> list[Path]:
    """The instance prompt at fixed seeds, so two trainings can be compared picture by picture."""
    report(progress("samples", 0, len(seeds)))
    images = plan.draw(pipe, prompt, seeds, on_batch=lambda n: report(progress("samples", n, len(seeds))))
    return [write_atomic_with(folder / f"sample_{seed}.png", lambda tmp, im=image: im.save(tmp, format="PNG"))
            for seed, image in zip(seeds, images, strict=True)]


def _save(path: Path, image: Image.Image) -> None:
    write_atomic_with(path, lambda tmp: image.save(tmp, format="PNG"))


def before_pictures(pipe, class_word: str, plan: DrawPlan, before_dir: Path | None, seeds: Sequence[int],
                    on_batch: Callable[[int], None]) -> list[Image.Image]:
    """The base model's bare class prompt at `seeds`: from `before_dir` where drawn before, else drawn and kept."""
    prompt = class_prompt(class_word)
    folder = None if before_dir is None else Path(before_dir) / plan.recipe(pipe, prompt)
    kept: dict[int, Image.Image] = {}
    if folder is not None and folder.is_dir():
        for seed in seeds:
            path = folder / f"{seed}.png"
            try:
                with Image.open(path) as image:
                    kept[seed] = image.convert("RGB")
            except (OSError, ValueError):
                continue
    missing = [s for s in seeds if s not in kept]
    if missing:
        # A draw let in at a pause point ends with the adapters on again: switch them off before each batch.
        drawn = plan.draw(pipe, prompt, missing, before_each=pipe.disable_lora, on_batch=on_batch)
        pipe.enable_lora()
        for seed, image in zip(missing, drawn, strict=True):
            kept[seed] = image
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
                _save(folder / f"{seed}.png", image)
    return [kept[s] for s in seeds]


@dataclass
class CardResult:
    path: Path
    drift: float
    before_drawn: int  # "before" pictures drawn for this card (0 when all came from the cache)


def make_report_card(pipe, class_word: str, folder: Path, plan: DrawPlan, report: ProgressFn,
                     before_dir: Path | None = None, seeds: Sequence[int] = DRIFT_SEEDS,
                     shown: int = len(REPORT_SEEDS)) -> CardResult:
    """The bare class prompt before (base model) and after (the active LoRA) at `seeds`, the drift between the
    two sets, and the card (engine.report_card.compose) written to folder/report_card.png."""
    prompt = class_prompt(class_word)
    total = 2 * len(seeds)
    report(progress("report_card", 0, total))
    drawn = 0

    def counted(n: int) -> None:
        nonlocal drawn
        drawn = n
        report(progress("report_card", n, total))

    before = before_pictures(pipe, class_word, plan, before_dir, seeds, counted)
    before_drawn = drawn
    offset = len(seeds)
    after = plan.draw(pipe, prompt, seeds, before_each=pipe.enable_lora,
                      on_batch=lambda n: report(progress("report_card", offset + n, total)))
    drift = class_drift(before, after)
    card = compose(before[:shown], after[:shown], drift)
    path = write_atomic_with(Path(folder) / "report_card.png", lambda tmp: card.save(tmp, format="PNG"))
    return CardResult(path, drift, before_drawn)
