"""Side-by-side speed of our trainer and diffusers' DreamBooth-LoRA example script, with the same settings.

The example script is only measured, never shipped: its path comes from `--reference` and it runs in a child
process (`python -m tools.reference_bench run-reference PATH -- ARGS`) that times its progress bar.

    python -m tools.reference_bench --reference /tmp/reference/train_dreambooth_lora.py [--steps N] [--model DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Printed by the child process once per optimisation step of the reference script, on stdout.
STEP_MARKER = "KABINA_REFERENCE_STEP"
# The reference script names its training progress bar so; other bars (class images, model loading) are ignored.
REFERENCE_BAR = "Steps"
CLASS_WORD = "dog"
TOKEN = "sks"
SEED = 1234
LEARNING_RATE = 1e-4
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
RESULT_KEYS = (
    "bench", "date", "host", "device", "versions", "commands", "reference_script", "settings",
    "ours", "reference", "rounds", "ours_steps_per_s", "reference_steps_per_s", "ratio", "ratio_median_step",
)


class BenchError(Exception):
    """A side could not be measured; the message says which and why."""


# --- pure parts: timings, commands, the result ------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What both trainers are given; one object so the two command lines cannot drift apart."""

    steps: int
    warmup: int
    rank: int
    resolution: int
    num_class_images: int
    num_photos: int
    mixed_precision: str  # "no" | "bf16" | "fp16", the reference's spelling
    device: str
    instance_prompt: str
    class_prompt: str
    learning_rate: float = LEARNING_RATE
    prior_loss_weight: float = 1.0
    instance_batch: int = 1
    class_batch: int = 1
    seed: int = SEED
    reference_precomputes_text: bool = True


@dataclass(frozen=True)
class Rate:
    steps_per_s: float
    median_step_ms: float
    timed_steps: int


def parse_step_markers(output: str) -> list[tuple[int, float]]:
    """(step, monotonic seconds) from the child's marker lines; anything else in the output is ignored."""
    marks = []
    pattern = re.compile(rf"^{STEP_MARKER} (\d+) ([0-9.]+)\s*$")
    for line in output.splitlines():
        found = pattern.match(line.strip())
        if found:
            marks.append((int(found.group(1)), float(found.group(2))))
    return marks


def parse_tqdm_rate(output: str, desc: str = REFERENCE_BAR) -> float | None:
    """Steps/s from the last refresh of a tqdm bar named `desc` (tqdm's own smoothed rate).

    A fallback for a reference run without the step hook; coarser than markers, as tqdm averages the rate
    over recent refreshes and start-up can leak into it on short runs.
    """
    rate = None
    pattern = re.compile(rf"{re.escape(desc)}:[^\r\n]*?\d+/\d+ \[[^\]]*?([0-9.]+)(it/s|s/it)")
    for found in pattern.finditer(output):
        value = float(found.group(1))
        if value > 0:
            rate = value if found.group(2) == "it/s" else 1.0 / value
    return rate


def steady_rate(marks: Sequence[tuple[int, float]], warmup: int) -> Rate:
    """Steps/s after the first `warmup` steps: start-up, first-call kernels and allocator growth left out."""
    marks = sorted(marks)
    kept = [(step, t) for step, t in marks if step >= warmup]
    if len(kept) < 2:
        raise BenchError(f"only {len(kept)} timed steps after {warmup} warm-up steps; run more --steps")
    (first_step, first_t), (last_step, last_t) = kept[0], kept[-1]
    if last_t <= first_t:
        raise BenchError("step timestamps do not increase")
    durations = [
        (t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in zip(kept, kept[1:], strict=False) if s1 > s0
    ]
    return Rate(
        steps_per_s=round((last_step - first_step) / (last_t - first_t), 4),
        median_step_ms=round(1000 * statistics.median(durations), 3),
        timed_steps=last_step - first_step,
    )


def default_warmup(steps: int) -> int:
    return max(2, steps // 5)


def mixed_precision_for(device_type: str, dtype_name: str) -> str:
    """The reference's --mixed_precision that matches our runtime's dtype."""
    if device_type != "cuda":
        return "no"
    return {"bfloat16": "bf16", "float16": "fp16"}.get(dtype_name, "no")


def reference_args(settings: Settings, model: Path, instance_dir: Path, class_dir: Path, output_dir: Path) -> list[str]:
    """The reference script's flags for the same training ours does: prior preservation, 1 + 1 per step."""
    args = [
        "--pretrained_model_name_or_path", str(model),
        "--instance_data_dir", str(instance_dir),
        "--class_data_dir", str(class_dir),
        "--instance_prompt", settings.instance_prompt,
        "--class_prompt", settings.class_prompt,
        "--with_prior_preservation",
        "--prior_loss_weight", str(settings.prior_loss_weight),
        # Exactly as many as the folder holds: the script then generates none of its own.
        "--num_class_images", str(settings.num_class_images),
        "--output_dir", str(output_dir),
        "--seed", str(settings.seed),
        "--resolution", str(settings.resolution),
        "--center_crop",
        # One instance example; prior preservation appends one class example to it.
        "--train_batch_size", str(settings.instance_batch),
        "--max_train_steps", str(settings.steps),
        # Past the last step: no checkpoint is written during the timed steps.
        "--checkpointing_steps", str(settings.steps + 1),
        "--learning_rate", str(settings.learning_rate),
        "--lr_scheduler", "constant",
        "--lr_warmup_steps", "0",
        "--rank", str(settings.rank),
        "--mixed_precision", settings.mixed_precision,
        "--dataloader_num_workers", "0",
    ]
    if settings.reference_precomputes_text:
        # Its own option for a frozen text encoder: the fairest like-for-like with our cached embeddings.
        args.append("--pre_compute_text_embeddings")
    return args


def reference_command(
    reference: Path,
    args: Sequence[str],
    *,
    python: str = sys.executable,
    launcher: str = "python",
    mixed_precision: str = "no",
) -> list[str]:
    """The child process: our step hook around the script, started by plain Python or `accelerate launch`."""
    hook = ["-m", "tools.reference_bench", "run-reference", str(reference), "--"]
    if launcher == "accelerate":
        return [
            python, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
            "--mixed_precision", mixed_precision, "--dynamo_backend", "no", *hook, *args,
        ]
    if launcher != "python":
        raise ValueError(f"unknown launcher {launcher!r}")
    return [python, *hook, *args]


def median_rate(rates: Sequence[Rate]) -> Rate:
    """The middle round: on a shared machine one round can be slowed by a neighbour, the median is not."""
    ordered = sorted(rates, key=lambda r: r.steps_per_s)
    return ordered[(len(ordered) - 1) // 2]


def build_result(
    *,
    settings: Settings,
    ours: Sequence[Rate],
    reference: Sequence[Rate],
    device: dict[str, Any],
    versions: dict[str, str],
    commands: dict[str, str],
    reference_script: dict[str, str],
    host: str,
    date: str,
) -> dict[str, Any]:
    """One JSON object per run; `ours`/`reference` are the median rounds, every round kept under `rounds`."""
    mine, theirs = median_rate(ours), median_rate(reference)
    return {
        "bench": "reference-trainer",
        "date": date,
        "host": host,
        "device": device,
        "versions": versions,
        "commands": commands,
        "reference_script": reference_script,
        "settings": asdict(settings),
        "ours": asdict(mine),
        "reference": asdict(theirs),
        "rounds": [{"ours": asdict(a), "reference": asdict(b)} for a, b in zip(ours, reference, strict=True)],
        "ours_steps_per_s": mine.steps_per_s,
        "reference_steps_per_s": theirs.steps_per_s,
        "ratio": round(mine.steps_per_s / theirs.steps_per_s, 3),
        # Median step time ignores single slow steps (a busy neighbour, an epoch boundary in the reference).
        "ratio_median_step": round(theirs.median_step_ms / mine.median_step_ms, 3),
    }


def check_result(result: dict[str, Any]) -> None:
    """Raise ValueError unless `result` has the shape docs/bench/README.md promises."""
    missing = [key for key in RESULT_KEYS if key not in result]
    if missing:
        raise ValueError(f"missing keys: {missing}")
    for side in ("ours_steps_per_s", "reference_steps_per_s", "ratio"):
        if not (isinstance(result[side], int | float) and result[side] > 0):
            raise ValueError(f"{side} must be a positive number, not {result[side]!r}")
    expected = result["ours_steps_per_s"] / result["reference_steps_per_s"]
    if abs(result["ratio"] - expected) > 0.01 * expected:
        raise ValueError(f"ratio {result['ratio']} is not ours / reference ({expected:.3f})")
    for key in ("harness", "reference"):
        if not result["commands"].get(key):
            raise ValueError(f"commands.{key} is missing")
    if "name" not in result["device"]:
        raise ValueError("device.name is missing")


def result_file_name(device_kind: str, host: str, date: str) -> str:
    safe_host = re.sub(r"[^a-z0-9-]+", "-", host.lower()).strip("-") or "ci"
    return f"{device_kind}-{safe_host}-{date}-reference.json"


# --- the child: the reference script with a step hook -------------------------------------------------------------


def _make_torchvision_importable() -> bool:
    """Let torchvision's pure-Python transforms import when its compiled ops cannot load.

    The only torchvision wheel on a CPU-only box may be the CUDA build; its extension then fails to load and
    its import stops at registering fake kernels for `nms`/`qnms`. Declaring those two schemas is enough for
    the transforms the script uses. Returns True when that was needed.
    """
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
        return False
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    import torch

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    globals()["_torchvision_stub_library"] = lib  # a dropped Library object unregisters its schemas
    import torchvision  # noqa: F401, F811

    return True


def _install_step_hook() -> None:
    import tqdm.auto

    base = tqdm.auto.tqdm

    class TimedBar(base):  # type: ignore[misc, valid-type]
        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            if self.desc.startswith(REFERENCE_BAR):
                print(f"{STEP_MARKER} {int(self.n)} {time.monotonic():.6f}", flush=True)
            return shown

    tqdm.auto.tqdm = TimedBar


def run_reference(script: str, args: Sequence[str]) -> None:
    import runpy

    if _make_torchvision_importable():
        print("torchvision: compiled ops unavailable, stubbed nms/qnms schemas", file=sys.stderr)
    _install_step_hook()
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


# --- the parent: both sides, one run ------------------------------------------------------------------------------


def make_photos(folder: Path, count: int, resolution: int) -> list:
    """Distinct, deterministic square pictures: speed does not depend on what they show."""
    import numpy as np
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    photos = []
    for i in range(count):
        rng = np.random.default_rng(i)
        pixels = (rng.random((resolution, resolution, 3)) * 80 + 40 * i).clip(0, 255).astype("uint8")
        image = Image.fromarray(pixels)
        box = [int(v) for v in sorted(rng.integers(0, resolution, 2))] * 2
        ImageDraw.Draw(image).ellipse([box[0], box[2], box[1] + 2, box[3] + 2], fill=(200, 60 * i % 255, 90))
        image.save(folder / f"photo_{i:02d}.png")
        photos.append(image)
    return photos


def _versions() -> dict[str, str]:
    import accelerate
    import diffusers
    import peft
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
    }


def _device_info(runtime) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"type": runtime.device.type, "dtype": str(runtime.dtype).replace("torch.", "")}
    if runtime.is_cuda:
        info["name"] = torch.cuda.get_device_name(runtime.device)
    else:
        info["name"] = platform.processor() or platform.machine()
        info["cpu_count"] = os.cpu_count()
        info["torch_threads"] = torch.get_num_threads()
    return info


def measure_ours(spec, pipe, runtime, warmup: int) -> tuple[Rate, float]:
    from engine.training import train

    marks: list[tuple[int, float]] = []

    def on_progress(progress: dict) -> None:
        if progress.get("stage") == "training":
            marks.append((int(progress["step"]), time.monotonic()))

    started = time.monotonic()
    train(spec, on_progress, None, pipe=pipe, runtime=runtime)
    return steady_rate(marks, warmup), time.monotonic() - started


def measure_reference(command: list[str], env: dict[str, str], warmup: int, log_path: Path) -> tuple[Rate, float]:
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log_file:
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=log_file, text=True, check=False)
    wall = time.monotonic() - started
    log_path.write_text(log_path.read_text(encoding="utf-8") + done.stdout, encoding="utf-8")
    if done.returncode != 0:
        tail = log_path.read_text(encoding="utf-8")[-3000:]
        raise BenchError(f"the reference script exited with {done.returncode}; log {log_path}:\n{tail}")
    marks = parse_step_markers(done.stdout)
    if marks:
        return steady_rate(marks, warmup), wall
    rate = parse_tqdm_rate(log_path.read_text(encoding="utf-8"))
    if rate is None:
        raise BenchError(f"no step timings in the reference's output; log {log_path}")
    return Rate(steps_per_s=round(rate, 4), median_step_ms=round(1000 / rate, 3), timed_steps=0), wall


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_bench(options: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    reference = Path(options.reference).expanduser().resolve()
    if not reference.is_file():
        raise BenchError(f"--reference {reference} is not a file")

    import torch

    from engine.base_model import load_base_pipeline, pick_runtime, training_resolution
    from engine.class_images import ensure_class_images
    from engine.tokens import class_prompt, instance_prompt
    from engine.training import TrainSpec

    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    work = Path(options.workdir or tempfile.mkdtemp(prefix="kabina-reference-bench-")).resolve()
    work.mkdir(parents=True, exist_ok=True)

    if options.model:
        model = Path(options.model).expanduser().resolve()
    else:
        from engine.tiny_model import build_tiny_pipeline

        model = work / "tiny-model"
        if not (model / "model_index.json").is_file():
            build_tiny_pipeline(model)
    runtime = pick_runtime(options.device)
    pipe = load_base_pipeline(model, runtime)
    resolution = training_resolution(pipe)
    warmup = options.warmup if options.warmup is not None else default_warmup(options.steps)
    settings = Settings(
        steps=options.steps,
        warmup=warmup,
        rank=options.rank,
        resolution=resolution,
        num_class_images=options.num_class_images,
        num_photos=options.photos,
        mixed_precision=mixed_precision_for(runtime.device.type, str(runtime.dtype).replace("torch.", "")),
        device=str(runtime.device),
        instance_prompt=instance_prompt(TOKEN, CLASS_WORD),
        class_prompt=class_prompt(CLASS_WORD),
        reference_precomputes_text=not options.reference_encodes_text,
    )

    # Shared inputs: the same photos and the same class images on both sides, made before either is timed.
    instance_dir, class_dir = work / "photos", work / "class-images"
    photos = make_photos(instance_dir, settings.num_photos, resolution)
    ensure_class_images(pipe, class_dir, settings.class_prompt, settings.num_class_images, resolution,
                        steps=options.class_image_steps)
    stray = [p.name for p in class_dir.iterdir() if p.suffix != ".png"]
    if stray or len(list(class_dir.iterdir())) != settings.num_class_images:
        raise BenchError(f"{class_dir} must hold exactly {settings.num_class_images} class images (stray: {stray})")

    spec = TrainSpec(
        photos=photos,
        class_word=CLASS_WORD,
        token=TOKEN,
        output_dir=work / "ours",
        class_image_dir=class_dir,
        num_class_images=settings.num_class_images,
        steps=settings.steps,
        learning_rate=settings.learning_rate,
        rank=settings.rank,
        prior_loss_weight=settings.prior_loss_weight,
        checkpoint_every=0,
        seed=settings.seed,
        sample_seeds=(),
        gradient_checkpointing=False,
        device=options.device,
        resolution=resolution,
    )
    args = reference_args(settings, model, instance_dir, class_dir, work / "reference-out")
    command = reference_command(reference, args, launcher=options.launcher, mixed_precision=settings.mixed_precision)
    env = dict(os.environ, **OFFLINE_ENV)
    if options.reference_pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [options.reference_pythonpath, env.get("PYTHONPATH")]))
    if not runtime.is_cuda:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the script picks its own device; keep it on ours

    # Alternating rounds: a slow spell of the machine hits both sides rather than one.
    ours: list[Rate] = []
    theirs: list[Rate] = []
    walls: dict[str, list[float]] = {"ours": [], "reference": []}
    for round_no in range(options.rounds):
        rate, wall = measure_ours(spec, pipe, runtime, warmup)
        ours.append(rate)
        walls["ours"].append(round(wall, 2))
        if runtime.is_cuda:
            torch.cuda.empty_cache()
        rate, wall = measure_reference(command, env, warmup, work / f"reference-{round_no}.log")
        theirs.append(rate)
        walls["reference"].append(round(wall, 2))
    device = _device_info(runtime)
    del pipe
    gc.collect()

    harness = "python -m tools.reference_bench " + shlex.join(argv)
    env_prefix = f"PYTHONPATH={shlex.quote(options.reference_pythonpath)} " if options.reference_pythonpath else ""
    result = build_result(
        settings=settings,
        ours=ours,
        reference=theirs,
        device=device,
        versions=_versions(),
        commands={"harness": harness, "reference": env_prefix + shlex.join(command)},
        reference_script={
            "name": reference.name,
            "sha256": _sha256(reference),
            "source": options.reference_source,
        },
        host=options.host or platform.node() or "ci",
        date=options.date or dt.date.today().isoformat(),
    )
    result["wall_s"] = walls
    check_result(result)
    return result


def parse_options(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.reference_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="path to diffusers' examples/dreambooth/train_dreambooth_lora.py")
    parser.add_argument("--model", help="diffusers folder of the base model (default: a fresh tiny model)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of both sides; medians reported")
    parser.add_argument("--warmup", type=int, help="steps left out of the rate (default: a fifth, at least 2)")
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--photos", type=int, default=5)
    parser.add_argument("--num-class-images", type=int, default=10)
    parser.add_argument("--class-image-steps", type=int, default=2, help="denoising steps per class image (not timed)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--launcher", choices=("python", "accelerate"), default="python")
    parser.add_argument("--reference-pythonpath", help="extra import path for the reference only (e.g. its torchvision)")
    parser.add_argument("--reference-encodes-text", action="store_true",
                        help="run the reference without --pre_compute_text_embeddings")
    parser.add_argument("--reference-source", default="", help="where the script came from, recorded in the JSON")
    parser.add_argument("--workdir", help="keep inputs, outputs and the reference's log here")
    parser.add_argument("--out", help="also write the JSON to this file")
    parser.add_argument("--host", help="host name recorded in the JSON")
    parser.add_argument("--date", help="date recorded in the JSON (default today)")
    options = parser.parse_args(argv)
    if options.steps < 4:
        parser.error("--steps must be at least 4")
    if options.rounds < 1:
        parser.error("--rounds must be at least 1")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run-reference"]:
        if len(argv) < 2:
            print("usage: python -m tools.reference_bench run-reference SCRIPT -- ARGS", file=sys.stderr)
            return 2
        rest = argv[2:]
        run_reference(argv[1], rest[1:] if rest[:1] == ["--"] else rest)
        return 0
    options = parse_options(argv)
    try:
        result = run_bench(options, argv)
    except BenchError as exc:
        print(f"reference bench failed: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2)
    if options.out:
        Path(options.out).parent.mkdir(parents=True, exist_ok=True)
        Path(options.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
