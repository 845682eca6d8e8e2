"""`python -m engine bench --time-to-model`: photos → ready model, per phase, for two recipes, cold and warm.

Each run is a real engine.training.train() (the call the worker and `python -m engine train` make), timed at the
phase boundaries train() announces (engine.training.PHASES), with the denoiser's work counted by a forward hook:
a call on a batch of B latents counts B, so classifier-free guidance's doubled batch counts twice and batching
never changes the figure; backward passes are not counted (they run no forward).

  paper    DreamBooth's class-image prior preservation with the family's class set, samples and card at 25 steps,
           nothing kept between trainings but the class images: what Kabina did before.
  default  what Kabina does now: the family's prior method, draw steps and cached report-card "before" pictures.

`cold` starts with empty caches (no class images, no "before" pictures); `warm` is the same training again with
the caches the cold one filled, as for the second user who trains the same class.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

RECIPES = ("paper", "default")
PAPER_DRAW_STEPS = 25  # samples and report card before this issue, whatever the family


@dataclass
class PassCounter:
    """Per-sample forward evaluations of one module, from a forward pre-hook."""

    count: int = 0

    def __call__(self, _module, args, kwargs) -> None:
        latents = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
        self.count += int(latents.shape[0])


@contextlib.contextmanager
def counting_passes(pipe) -> Iterator[PassCounter]:
    from engine.train_steps import denoiser

    counter = PassCounter()
    handle = denoiser(pipe).register_forward_pre_hook(counter, with_kwargs=True)
    try:
        yield counter
    finally:
        handle.remove()


@dataclass
class PhaseClock:
    """on_phase for train(): seconds and denoiser passes from each phase's start to the next one's."""

    counter: PassCounter
    sync: Any
    marks: list[tuple[str, float, int]] = field(default_factory=list)

    def __call__(self, name: str) -> None:
        self.sync()
        self.marks.append((name, time.perf_counter(), self.counter.count))

    def phases(self) -> dict[str, dict[str, float | int]]:
        out: dict[str, dict[str, float | int]] = {}
        for (name, t0, n0), (_next, t1, n1) in zip(self.marks, self.marks[1:], strict=False):
            out[name] = {"seconds": round(t1 - t0, 3), "denoiser_passes": n1 - n0}
        return out


def _sync(runtime):
    import torch

    def sync() -> None:
        if runtime.is_cuda:
            torch.cuda.synchronize(runtime.device)

    return sync


def recipe_spec(recipe: str, base, family) -> Any:
    """The TrainSpec of a recipe, from the run's common spec `base`."""
    if recipe == "paper":
        return replace(base, prior="class-images", num_class_images=base.num_class_images or family.class_images,
                       sample_steps=base.sample_steps or PAPER_DRAW_STEPS, before_dir=None)
    if recipe == "default":
        return replace(base, prior=None, num_class_images=base.num_class_images or None)
    raise ValueError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")


def timed_training(pipe, runtime, spec) -> dict[str, Any]:
    """One training through engine.training.train, with seconds and passes overall and per phase."""
    from engine.training import remove_lora, train

    remove_lora(pipe)
    sync = _sync(runtime)
    with counting_passes(pipe) as counter:
        clock = PhaseClock(counter, sync)
        sync()
        started = time.perf_counter()
        train(spec, pipe=pipe, runtime=runtime, on_phase=clock)
        sync()
        seconds = time.perf_counter() - started
    remove_lora(pipe)
    return {"seconds": round(seconds, 3), "denoiser_passes": counter.count, "phases": clock.phases()}


def _load(family_name: str, runtime, work: Path):
    from engine.base_model import load_base_pipeline, prepare_pipeline
    from engine.tiny_families import CLI_FAMILIES, build_random_family
    from engine.tiny_model import build_tiny_pipeline

    if runtime.is_cuda:
        pipe = build_random_family(CLI_FAMILIES[family_name], runtime.device, runtime.dtype)
        prepare_pipeline(pipe, runtime)
        return pipe, f"{CLI_FAMILIES[family_name]}-shaped, random weights"
    build_tiny_pipeline(work / "model", family=family_name)
    return load_base_pipeline(work / "model", runtime), f"tiny {family_name} (engine tiny-model --family {family_name})"


def run_time_to_model(family_name: str = "sd1", steps: int | None = None, photos: int = 4,
                      num_class_images: int | None = None, draw_steps: int | None = None) -> dict[str, Any]:
    """Both recipes, cold then warm, on one loaded model; the figures in the issue's JSON shape."""
    import torch

    from engine.base_model import describe, pick_runtime, train_resolution
    from engine.bench import _photos
    from engine.detection import family_of
    from engine.training import TrainSpec

    runtime = pick_runtime("auto")
    work = Path(tempfile.mkdtemp(prefix="kabina-ttm-"))
    try:
        pipe, label = _load(family_name, runtime, work)
        family = family_of(pipe)
        resolution = train_resolution(pipe)
        steps = steps or 400
        base = TrainSpec(photos=_photos(photos, resolution), class_word="dog", token="sks",
                         output_dir=work / "out", steps=steps, checkpoint_every=0, num_class_images=num_class_images,
                         sample_steps=draw_steps, resolution=resolution, device=str(runtime.device))
        # Unmeasured: the first training of a process pays one-time costs (allocator, kernels, lazy imports).
        timed_training(pipe, runtime, replace(base, steps=2, prior="off", sample_seeds=(), report_card=False,
                                              output_dir=work / "warm-up"))
        recipes: dict[str, Any] = {}
        methods: dict[str, str] = {}
        for recipe in RECIPES:
            caches = work / recipe  # each recipe starts cold: its own empty caches
            spec = replace(recipe_spec(recipe, base, family), class_image_dir=caches / "class",
                           before_dir=None if recipe == "paper" else caches / "before")
            methods[recipe] = spec.prior_method(family)
            recipes[recipe] = {when: timed_training(pipe, runtime, replace(spec, output_dir=caches / when))
                               for when in ("cold", "warm")}
        return {
            "family": family.name,
            "device": describe(runtime)["device"],
            "recipes": recipes,
            **_ratios(recipes),
            "model": label,
            "runtime": describe(runtime),
            "resolution": resolution,
            "photos": photos,
            "steps": steps,
            "prior": methods,
            "torch": torch.__version__,
            "diffusers": __import__("diffusers").__version__,
            "threads": torch.get_num_threads(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _ratios(recipes: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets as ratios of one run: paper cold / default cold (passes, seconds), default warm /
    paper warm (seconds)."""
    paper, default = recipes["paper"], recipes["default"]

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 2) if b else None

    return {"ratios": {
        "passes_paper_cold_over_default_cold": ratio(paper["cold"]["denoiser_passes"], default["cold"]["denoiser_passes"]),
        "seconds_paper_cold_over_default_cold": ratio(paper["cold"]["seconds"], default["cold"]["seconds"]),
        "seconds_default_warm_over_paper_warm": ratio(default["warm"]["seconds"], paper["warm"]["seconds"]),
    }}
