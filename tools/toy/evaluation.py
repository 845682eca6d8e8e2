"""DreamBooth measured in the toy world over several training seeds: fidelity, class drift and drift references."""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from engine import metrics
from engine.report_card import DRIFT_WARNING_THRESHOLD, drift_threshold
from engine.tokens import IDENTIFIER_POOL, class_prompt, instance_prompt, is_single_token
from tools.toy import world

# The shipped toy base model (python -m tools.toy build reproduces it).
TOY_MODEL_DIR = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "toy_model"

# The reference pictures are drawn at the judging seeds shifted by this much per set: disjoint from them and
# from each other, so a reference compares the base model's class with a fresh draw, never with itself.
REFERENCE_SEED_STRIDE = 1000


@dataclass(frozen=True)
class ToyEvalConfig:
    """One DreamBooth experiment, repeated at several training seeds, and how the pictures that judge it are drawn."""

    model_dir: Path = TOY_MODEL_DIR
    token: str = IDENTIFIER_POOL[0]
    class_word: str = world.SUBJECT_CLASS
    # The far end of the drift scale: how far "dog" would move by becoming another class of the world.
    other_class_word: str = "cat"
    photo_count: int = 4
    # The photos stay the same at every training seed: they are the user's input and the reference fidelity is
    # measured against, so holding them fixed leaves only the training's own luck (which examples, noise and
    # timesteps each step draws, and the LoRA's initial weights) to vary from seed to seed.
    photo_seed: int = 7
    # Few steps at a high rate: the toy UNet is tiny, and five seeds x two trainings must fit the test budget.
    # Chosen by a sweep at training seeds 1..5, 16 pictures per figure drawn with 20 sampler steps (fidelity with
    # prior: min/mean; class drift with prior: mean (max); without: mean (min); what the prior saved:
    # mean +- std (min)):
    #   steps lr    rank class  fidelity   with           without        saved
    #   400   2e-3  8    64     0.25/0.44  0.020 (0.032)  0.044 (0.036)  0.024 +- 0.007 (0.016)
    #   300   2e-3  8    64     0.20/0.34  0.023 (0.030)  0.038 (0.027)  0.015 +- 0.010 (0.005)
    #   250   3e-3  8    64     0.17/0.42  0.023 (0.031)  0.041 (0.031)  0.018 +- 0.010 (0.008)
    #   250   4e-3  8    64     0.23/0.37  0.019 (0.026)  0.039 (0.030)  0.020 +- 0.010 (0.010)  <- chosen
    #   200   1e-3  8    64     0.14/0.21  0.017 (0.021)  0.032 (0.030)  0.016 +- 0.004 (0.009)
    #   200   2e-3  8    64     0.17/0.28  0.020 (0.030)  0.038 (0.033)  0.017 +- 0.007 (0.007)
    #   200   2e-3  4    64     0.16/0.26  0.020 (0.033)  0.034 (0.031)  0.014 +- 0.007 (0.007)
    #   200   2e-3  8    128    0.13/0.32  0.023 (0.032)  0.038 (0.033)  0.015 +- 0.005 (0.008)
    #   200   3e-3  16   64     0.10/0.32  0.018 (0.034)  0.038 (0.027)  0.021 +- 0.008 (0.011)
    #   200   4e-3  8    64     0.14/0.34  0.015 (0.029)  0.040 (0.030)  0.024 +- 0.009 (0.010)
    #   150   3e-3  8    64     0.07/0.29  0.015 (0.017)  0.031 (0.021)  0.016 +- 0.007 (0.010)
    #   150   5e-3  8    64     0.07/0.29  0.012 (0.015)  0.037 (0.028)  0.024 +- 0.010 (0.015)
    # Fidelity is what limits: with train()'s constant rate the last steps swing the subject's colour between
    # yellow, orange and red (0.14 .. 0.51 within 150 steps of one run at 3e-3), so with fewer steps some seed
    # always stops before the token has bound. 250 x 4e-3 is the cheapest setting with no seed under 0.2, and
    # on seeds 6..10 it held: fidelity 0.29/0.37, with 0.019 (0.025), without 0.046 (0.033), saved
    # 0.027 +- 0.012 (0.013); drawn with 10 sampler steps (below), seeds 6..10 give fidelity 0.24/0.33, with
    # 0.020 (0.025), without 0.045 (0.032), saved 0.026 +- 0.011 (0.009). Other ranks (4, 16) and more class images
    # (128) helped nothing; 400 steps is as good and 60% dearer.
    steps: int = 250
    learning_rate: float = 4e-3
    rank: int = 8
    num_class_images: int = 64
    class_image_steps: int = 20
    # TrainSpec.seed: train() seeds both the step batches and the LoRA's initialisation from it.
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    sample_seeds: tuple[int, ...] = tuple(range(100, 116))
    # Ten DDIM steps draw the same figures as twenty to within the noise (references, drift: +-0.002; fidelity
    # a few hundredths lower) at half the cost, which pays for the training steps fidelity needs.
    sample_steps: int = 10
    guidance: float = 4.0
    # Prior methods trained at each seed besides the paper's class images and none (engine.train_steps).
    output_preservation: bool = True
    # Disjoint seed sets at which the drift references are drawn; their mean is the reference, their spread shown.
    reference_sets: int = 3
    # One thread, for the reason given in tools.toy.build.BuildPlan.threads; None keeps torch's setting.
    threads: int | None = 1


@dataclass
class SeedRun:
    """The figures of one training seed: the same photos trained with and without prior preservation."""

    seed: int
    fidelity_base: float
    fidelity_trained: float
    fidelity_trained_without_prior: float
    drift_with_prior: float
    drift_without_prior: float
    # drift_without_prior - drift_with_prior: what prior preservation saved at this seed.
    drift_saved_by_prior: float
    # Likeness of bare-class samples to the user's dog (engine.metrics.subject_fidelity): is the drift towards it?
    class_likeness_base: float
    class_likeness_with_prior: float
    class_likeness_without_prior: float
    seconds: float
    # Output preservation (PRIOR=output: the frozen base model's own prediction as the class target, no class
    # images); "with_prior" above is the paper's class-image method, "without_prior" PRIOR=off. None: not run.
    fidelity_trained_output: float | None = None
    drift_output: float | None = None
    drift_saved_by_output: float | None = None
    class_likeness_output: float | None = None
    pictures: dict[str, list[Image.Image]] = field(default_factory=dict, repr=False)

    def figures(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("pictures")
        return out


@dataclass
class DriftReferences:
    """Class drift of the base model's own class pictures against two fresh draws at disjoint seeds."""

    # The same class drawn again: what the metric reads when nothing moved (its noise floor).
    noise_floor: float
    # Another class: what it reads when the class has become a different one.
    other_class: float
    noise_floor_sets: list[float]
    other_class_sets: list[float]
    other_class_word: str

    @property
    def threshold(self) -> float:
        """Where engine.report_card's rule puts the warning for these references."""
        return drift_threshold(self.noise_floor, self.other_class)

    def figures(self) -> dict[str, Any]:
        return {**asdict(self), "threshold_by_rule": round(self.threshold, 4)}


@dataclass
class ToyEvalResult:
    runs: list[SeedRun]
    references: DriftReferences
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)
    # The base model's pictures (judged at every seed) and the photos.
    pictures: dict[str, list[Image.Image]] = field(default_factory=dict, repr=False)

    def table(self) -> list[dict[str, Any]]:
        return [run.figures() for run in self.runs]

    def summary(self) -> dict[str, dict[str, float]]:
        """Mean and spread of each figure over the seeds; std is the sample standard deviation (n - 1)."""
        names = [n for n, v in self.table()[0].items() if n not in ("seed", "seconds") and v is not None]
        return {name: spread([row[name] for row in self.table()]) for name in names}

    def prior_methods(self) -> dict[str, Any]:
        """Per prior method, the drift it saved against no prior across seeds, and whether that holds: a mean saving
        larger than its spread (sample std over the seeds). The family default is the cheapest method that holds:
        output preservation (no class set to draw) before the paper's class images."""
        saved = {"class-images": [r.drift_saved_by_prior for r in self.runs]}
        if self.runs and self.runs[0].drift_saved_by_output is not None:
            saved["output"] = [r.drift_saved_by_output for r in self.runs]
        methods = {}
        for name, values in saved.items():
            figures = spread(values)
            methods[name] = {"drift_saved": figures, "holds": figures["mean"] > figures["std"]}
        chosen = next((m for m in ("output", "class-images") if methods.get(m, {}).get("holds")), "off")
        return {"methods": methods, "chosen": chosen}

    def figures(self) -> dict[str, Any]:
        return {
            "seeds": self.table(),
            "summary": self.summary(),
            "prior_methods": self.prior_methods(),
            "references": self.references.figures(),
            "drift_warning_threshold": DRIFT_WARNING_THRESHOLD,
            "seconds": self.seconds,
            "config": self.config,
        }


def spread(values: Sequence[float]) -> dict[str, float]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 4), "std": round(std, 4),
            "min": round(min(values), 4), "max": round(max(values), 4)}


def sample(pipe, prompt: str, seeds: tuple[int, ...] | list[int], steps: int, guidance: float,
           resolution: int | None = None) -> list[Image.Image]:
    """One picture per seed; the same seeds, prompt and weights always give the same pictures."""
    import torch

    from engine.base_model import training_resolution

    size = resolution or training_resolution(pipe)
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    with torch.inference_mode():
        return pipe(
            prompt=[prompt] * len(seeds), num_inference_steps=steps, guidance_scale=guidance,
            height=size, width=size, generator=generators,
        ).images


def load_toy_pipeline(model_dir: Path = TOY_MODEL_DIR):
    from engine.base_model import load_base_pipeline, pick_runtime

    runtime = pick_runtime("cpu")
    return load_base_pipeline(model_dir, runtime), runtime


def run_toy_eval(config: ToyEvalConfig | None = None, work_dir: Path | None = None, pipe=None,
                 runtime=None) -> ToyEvalResult:
    """At each training seed, train the same photos twice through engine.training.train (prior weight 1, then 0)."""
    import torch

    config = config or ToyEvalConfig()
    if not config.seeds:
        raise ValueError("no training seeds to measure")
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _run(config, work_dir, pipe, runtime)
    finally:
        torch.set_num_threads(threads_before)


def _run(config: ToyEvalConfig, work_dir: Path | None, pipe, runtime) -> ToyEvalResult:
    from engine.training import remove_lora

    started = time.monotonic()
    if pipe is None:
        pipe, runtime = load_toy_pipeline(config.model_dir)
    if not is_single_token(pipe.tokenizer, config.token):
        raise ValueError(f"{config.token!r} is not a single token of the toy tokenizer")
    photos = world.subject_photos(config.photo_count, seed=config.photo_seed)
    remove_lora(pipe)
    # The base model's pictures are the same at every training seed: drawn once, judged against each run.
    base = {"subject_base": _draw(pipe, config, instance_prompt(config.token, config.class_word)),
            "class_base": _draw(pipe, config, class_prompt(config.class_word))}
    references = measure_references(pipe, config, base["class_base"])
    with _workspace(work_dir) as tmp:
        runs = [_run_seed(pipe, runtime, config, seed, photos, base, Path(tmp)) for seed in config.seeds]
    remove_lora(pipe)
    return ToyEvalResult(
        runs=runs,
        references=references,
        seconds=round(time.monotonic() - started, 1),
        config={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        pictures={**base, "photos": photos},
    )


def _draw(pipe, config: ToyEvalConfig, prompt: str, seeds: Sequence[int] | None = None) -> list[Image.Image]:
    return sample(pipe, prompt, list(seeds or config.sample_seeds), config.sample_steps, config.guidance)


def reference_seeds(config: ToyEvalConfig, index: int) -> list[int]:
    """The index-th (from 1) set of seeds for the references, disjoint from the judging seeds and other sets."""
    seeds = [s + index * REFERENCE_SEED_STRIDE for s in config.sample_seeds]
    if set(seeds) & set(config.sample_seeds):
        raise ValueError("reference seeds overlap the judging seeds; widen REFERENCE_SEED_STRIDE")
    return seeds


def measure_references(pipe, config: ToyEvalConfig, class_base: list[Image.Image]) -> DriftReferences:
    """The two ends of the drift scale, measured on the base model with the judging pictures as "before"."""
    floor, other = [], []
    for index in range(1, config.reference_sets + 1):
        seeds = reference_seeds(config, index)
        floor.append(metrics.class_drift(class_base, _draw(pipe, config, class_prompt(config.class_word), seeds)))
        other.append(metrics.class_drift(class_base, _draw(pipe, config, class_prompt(config.other_class_word), seeds)))
    return DriftReferences(
        noise_floor=round(statistics.fmean(floor), 4), other_class=round(statistics.fmean(other), 4),
        noise_floor_sets=[round(v, 4) for v in floor], other_class_sets=[round(v, 4) for v in other],
        other_class_word=config.other_class_word,
    )


def _run_seed(pipe, runtime, config: ToyEvalConfig, seed: int, photos: list[Image.Image],
              base: dict[str, list[Image.Image]], tmp: Path) -> SeedRun:
    import torch

    from engine.training import TrainSpec, train

    started = time.monotonic()
    pictures: dict[str, list[Image.Image]] = {}
    methods = [("with_prior", "class-images", 1.0), ("without_prior", "class-images", 0.0)]
    if config.output_preservation:
        methods.append(("output", "output", 1.0))
    for name, prior, weight in methods:
        spec = TrainSpec(
            photos=photos, class_word=config.class_word, token=config.token,
            output_dir=tmp / f"seed_{seed}" / name, prior=prior,
            # Class images depend on the base model only (engine.class_images.CLASS_SEED), so every seed shares them.
            class_image_dir=tmp / "class_images",
            num_class_images=config.num_class_images, steps=config.steps,
            learning_rate=config.learning_rate, rank=config.rank, prior_loss_weight=weight,
            seed=seed, sample_seeds=(), report_card=False, class_image_steps=config.class_image_steps, device="cpu",
        )
        # train() seeds the LoRA's initial weights from spec.seed itself; pinned here as well so each seed of this
        # experiment keeps meaning "steps and initialisation" whatever train() does with torch's generator.
        torch.manual_seed(seed)
        train(spec, pipe=pipe, runtime=runtime)
        pictures[f"subject_{name}"] = _draw(pipe, config, instance_prompt(config.token, config.class_word))
        pictures[f"class_{name}"] = _draw(pipe, config, class_prompt(config.class_word))

    def likeness(images: list[Image.Image]) -> float:
        return round(metrics.subject_fidelity(images, photos), 4)

    def drift(images: list[Image.Image]) -> float:
        return round(metrics.class_drift(base["class_base"], images), 4)

    with_prior, without_prior = drift(pictures["class_with_prior"]), drift(pictures["class_without_prior"])
    return SeedRun(
        seed=seed,
        fidelity_base=likeness(base["subject_base"]),
        fidelity_trained=likeness(pictures["subject_with_prior"]),
        fidelity_trained_without_prior=likeness(pictures["subject_without_prior"]),
        drift_with_prior=with_prior,
        drift_without_prior=without_prior,
        drift_saved_by_prior=round(without_prior - with_prior, 4),
        class_likeness_base=likeness(base["class_base"]),
        class_likeness_with_prior=likeness(pictures["class_with_prior"]),
        class_likeness_without_prior=likeness(pictures["class_without_prior"]),
        seconds=round(time.monotonic() - started, 1),
        pictures=pictures,
        **_output_figures(pictures, likeness, drift, without_prior),
    )


def _output_figures(pictures, likeness, drift, without_prior: float) -> dict[str, float]:
    if "class_output" not in pictures:
        return {}
    output = drift(pictures["class_output"])
    return {"fidelity_trained_output": likeness(pictures["subject_output"]), "drift_output": output,
            "drift_saved_by_output": round(without_prior - output, 4),
            "class_likeness_output": likeness(pictures["class_output"])}


@contextlib.contextmanager
def _workspace(work_dir: Path | None) -> Iterator[str]:
    """The caller's folder (kept, so its LoRAs can be looked at) or a temporary one."""
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        yield str(work_dir)
        return
    with tempfile.TemporaryDirectory(prefix="kabina-toy-") as tmp:
        yield tmp


def eval_toy_main(argv: list[str] | None = None) -> int:
    """`python -m engine eval-toy`: the per-seed table, its mean and spread, and the references, as one JSON object."""
    defaults = ToyEvalConfig()
    parser = argparse.ArgumentParser(prog="python -m engine eval-toy", description=__doc__)
    parser.add_argument("--model", type=Path, default=TOY_MODEL_DIR, help="toy base model folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(defaults.seeds),
                        help=f"training seeds (default: {' '.join(map(str, defaults.seeds))})")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--sheet", type=Path,
                        help="also save a contact sheet of every picture judged (PNG; one row per picture set)")
    args = parser.parse_args(argv)
    if not (args.model / "model_index.json").is_file():
        print(f"no toy model at {args.model}; build one with: python -m tools.toy build DIR", file=sys.stderr)
        return 2
    result = run_toy_eval(ToyEvalConfig(model_dir=args.model, steps=args.steps, seeds=tuple(args.seeds)))
    if args.sheet:
        contact_sheet(all_pictures(result)).save(args.sheet)
    print(format_table(result), file=sys.stderr)
    print(json.dumps(result.figures()))
    return 0


def all_pictures(result: ToyEvalResult) -> dict[str, list[Image.Image]]:
    rows = dict(result.pictures)
    for run in result.runs:
        rows.update({f"{name} (seed {run.seed})": images for name, images in run.pictures.items()})
    return rows


def format_table(result: ToyEvalResult) -> str:
    """The per-seed figures as a plain-text table for a person at a terminal; the JSON carries the same."""
    columns = ["fidelity_base", "fidelity_trained", "drift_with_prior", "drift_without_prior", "drift_saved_by_prior"]
    if result.runs and result.runs[0].drift_output is not None:
        columns += ["fidelity_trained_output", "drift_output", "drift_saved_by_output"]
    lines = ["seed  " + "  ".join(f"{c:>20}" for c in columns)]
    lines += [f"{row['seed']:<4}  " + "  ".join(f"{row[c]:>20.4f}" for c in columns) for row in result.table()]
    summary = result.summary()
    for stat in ("mean", "std", "min", "max"):
        lines.append(f"{stat:<4}  " + "  ".join(f"{summary[c][stat]:>20.4f}" for c in columns))
    for name, method in result.prior_methods()["methods"].items():
        saved = method["drift_saved"]
        lines.append(f"prior {name}: drift saved vs off {saved['mean']:.4f} +- {saved['std']:.4f} "
                     f"(min {saved['min']:.4f}): {'holds' if method['holds'] else 'does not hold'}")
    lines.append(f"chosen prior method: {result.prior_methods()['chosen']}")
    refs = result.references
    lines.append(f"references: noise floor {refs.noise_floor:.4f}, {refs.other_class_word} {refs.other_class:.4f}, "
                 f"threshold by rule {refs.threshold:.4f} (in use: {DRIFT_WARNING_THRESHOLD})")
    return "\n".join(lines)


def contact_sheet(pictures: dict[str, list[Image.Image]], scale: int = 2) -> Image.Image:
    """Every row of pictures side by side, for a person checking what the numbers mean."""
    rows = list(pictures.values())
    side = rows[0][0].width * scale
    sheet = Image.new("RGB", (side * max(len(r) for r in rows), side * len(rows)), "white")
    for y, row in enumerate(rows):
        for x, image in enumerate(row):
            sheet.paste(image.resize((side, side), Image.Resampling.NEAREST), (x * side, y * side))
    return sheet
