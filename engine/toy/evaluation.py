"""DreamBooth measured in the toy world: fidelity before/after and class drift with and without prior preservation."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from engine import metrics
from engine.tokens import IDENTIFIER_POOL, class_prompt, instance_prompt, is_single_token
from engine.toy import world

# The shipped toy base model (python -m engine.toy build reproduces it).
TOY_MODEL_DIR = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "toy_model"


@dataclass(frozen=True)
class ToyEvalConfig:
    """One DreamBooth experiment: what is trained and how the pictures that judge it are drawn."""

    model_dir: Path = TOY_MODEL_DIR
    token: str = IDENTIFIER_POOL[0]
    class_word: str = world.SUBJECT_CLASS
    photo_count: int = 4
    photo_seed: int = 7
    # Few steps at a high rate: the toy UNet is tiny, and the tests must stay within a couple of minutes.
    # Chosen by a small sweep (steps 150..800, lr 1e-3..5e-3, rank 4/8, 16/64 class images) for the best
    # subject fidelity at that cost; 64 class images keep the prior term from memorising a handful.
    steps: int = 400
    learning_rate: float = 2e-3
    rank: int = 8
    num_class_images: int = 64
    class_image_steps: int = 20
    seed: int = 1234
    sample_seeds: tuple[int, ...] = tuple(range(100, 116))
    sample_steps: int = 20
    guidance: float = 4.0
    # One thread, for the reason given in engine.toy.build.BuildPlan.threads; None keeps torch's setting.
    threads: int | None = 1


@dataclass
class ToyEvalResult:
    fidelity_base: float
    fidelity_trained: float
    drift_with_prior: float
    drift_without_prior: float
    fidelity_trained_without_prior: float
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)
    pictures: dict[str, list[Image.Image]] = field(default_factory=dict, repr=False)

    def figures(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("pictures")
        return out


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
    """Train the same photos twice through engine.training.train (prior weight 1, then 0) and measure both."""
    import torch

    config = config or ToyEvalConfig()
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _run(config, work_dir, pipe, runtime)
    finally:
        torch.set_num_threads(threads_before)


def _run(config: ToyEvalConfig, work_dir: Path | None, pipe, runtime) -> ToyEvalResult:
    import torch

    from engine.training import TrainSpec, remove_lora, train

    started = time.monotonic()
    if pipe is None:
        pipe, runtime = load_toy_pipeline(config.model_dir)
    if not is_single_token(pipe.tokenizer, config.token):
        raise ValueError(f"{config.token!r} is not a single token of the toy tokenizer")
    photos = world.subject_photos(config.photo_count, seed=config.photo_seed)
    subject_prompt = instance_prompt(config.token, config.class_word)
    bare_prompt = class_prompt(config.class_word)

    def draw(prompt: str) -> list[Image.Image]:
        return sample(pipe, prompt, config.sample_seeds, config.sample_steps, config.guidance)

    remove_lora(pipe)
    pictures = {"subject_base": draw(subject_prompt), "class_base": draw(bare_prompt)}
    with _workspace(work_dir) as tmp:
        for name, weight in (("with_prior", 1.0), ("without_prior", 0.0)):
            spec = TrainSpec(
                photos=photos, class_word=config.class_word, token=config.token,
                output_dir=Path(tmp) / name, class_image_dir=Path(tmp) / "class_images",
                num_class_images=config.num_class_images, steps=config.steps,
                learning_rate=config.learning_rate, rank=config.rank, prior_loss_weight=weight,
                seed=config.seed, sample_seeds=(), class_image_steps=config.class_image_steps,
                device="cpu",
            )
            # train() leaves the LoRA's random initialisation to torch's global generator; pin it so both
            # runs (and every rerun) start from the same adapter.
            torch.manual_seed(config.seed)
            train(spec, pipe=pipe, runtime=runtime)
            pictures[f"subject_{name}"] = draw(subject_prompt)
            pictures[f"class_{name}"] = draw(bare_prompt)
    remove_lora(pipe)

    return ToyEvalResult(
        fidelity_base=round(metrics.subject_fidelity(pictures["subject_base"], photos), 4),
        fidelity_trained=round(metrics.subject_fidelity(pictures["subject_with_prior"], photos), 4),
        drift_with_prior=round(metrics.class_drift(pictures["class_base"], pictures["class_with_prior"]), 4),
        drift_without_prior=round(metrics.class_drift(pictures["class_base"], pictures["class_without_prior"]), 4),
        fidelity_trained_without_prior=round(metrics.subject_fidelity(pictures["subject_without_prior"], photos), 4),
        seconds=round(time.monotonic() - started, 1),
        config={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        pictures={**pictures, "photos": photos},
    )


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
    """`python -m engine eval-toy`: print the toy DreamBooth figures as one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m engine eval-toy", description=__doc__)
    parser.add_argument("--model", type=Path, default=TOY_MODEL_DIR, help="toy base model folder")
    parser.add_argument("--steps", type=int, default=ToyEvalConfig.steps)
    parser.add_argument("--sheet", type=Path, help="also save a contact sheet of every picture judged (PNG)")
    args = parser.parse_args(argv)
    if not (args.model / "model_index.json").is_file():
        print(f"no toy model at {args.model}; build one with: python -m engine.toy build DIR", file=sys.stderr)
        return 2
    result = run_toy_eval(ToyEvalConfig(model_dir=args.model, steps=args.steps))
    if args.sheet:
        contact_sheet(result.pictures).save(args.sheet)
    print(json.dumps(result.figures()))
    return 0


def contact_sheet(pictures: dict[str, list[Image.Image]], scale: int = 2) -> Image.Image:
    """Every row of pictures side by side, for a person checking what the numbers mean."""
    rows = list(pictures.values())
    side = rows[0][0].width * scale
    sheet = Image.new("RGB", (side * max(len(r) for r in rows), side * len(rows)), "white")
    for y, row in enumerate(rows):
        for x, image in enumerate(row):
            sheet.paste(image.resize((side, side), Image.Resampling.NEAREST), (x * side, y * side))
    return sheet
