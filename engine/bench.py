"""`python -m engine bench`: training, drawing, LoRA switching and class-image speed as one JSON object."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def _photos(count: int, size: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(count):
        f = rng.uniform(1, 6, 6)
        pic = np.stack([np.sin(xx * f[i] * 6.28) * np.cos(yy * f[i + 3] * 6.28) for i in range(3)], -1)
        out.append(Image.fromarray(((pic * 0.45 + 0.5).clip(0, 1) * 255).astype("uint8")))
    return out


def _peak_memory_mb(runtime) -> float:
    import resource

    import torch

    if runtime.is_cuda:
        return round(torch.cuda.max_memory_allocated(runtime.device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux reports KiB


def _sync(runtime) -> None:
    import torch

    if runtime.is_cuda:
        torch.cuda.synchronize(runtime.device)


def _step_ms(stamps: list[float]) -> list[float]:
    """Milliseconds between training steps, the first two (warm-up) left out when there are enough."""
    kept = stamps[2:] if len(stamps) > 3 else stamps
    return [(b - a) * 1000 for a, b in zip(kept, kept[1:], strict=False)] or [0.0]


def run_bench(base_model: Path | None = None, steps: int | None = None, draw_steps: int | None = None) -> dict[str, Any]:
    import torch

    from engine.base_model import (
        CONFIGS_DIR,
        describe,
        load_base_pipeline,
        pick_runtime,
        training_resolution,
        use_fast_attention,
    )
    from engine.class_images import ensure_class_images
    from engine.drawing import Drawer, DrawRequest
    from engine.tiny_model import build_random_pipeline, build_tiny_pipeline
    from engine.training import TrainSpec, remove_lora, train

    runtime = pick_runtime("auto")
    work = Path(tempfile.mkdtemp(prefix="kabina-bench-"))
    try:
        # The folder the scheduling figure's worker loads by (None: a random pipeline with no folder, keyed apart).
        model_dir: Path | None = base_model
        if base_model is not None:
            model_name, pipe = str(base_model), load_base_pipeline(base_model, runtime)
        elif runtime.is_cuda:
            model_name = "sd15-shaped, random weights"
            pipe = build_random_pipeline(CONFIGS_DIR / "sd15", runtime.device, runtime.dtype)
            pipe.set_progress_bar_config(disable=True)
            use_fast_attention(pipe, runtime)
            for m in (pipe.unet, pipe.vae, pipe.text_encoder):
                m.requires_grad_(False)
        else:
            model_name, model_dir = "tiny (engine tiny-model)", work / "tiny"
            build_tiny_pipeline(model_dir)
            pipe = load_base_pipeline(model_dir, runtime)
        resolution = training_resolution(pipe)
        draw_steps = draw_steps or 25
        if runtime.is_cuda:
            torch.cuda.reset_peak_memory_stats(runtime.device)

        # Class images: the first training of a class pays for these.
        class_count = 8
        _sync(runtime)
        started = time.perf_counter()
        ensure_class_images(pipe, work / "class", "a photo of dog", class_count, resolution, steps=draw_steps)
        _sync(runtime)
        class_per_s = class_count / (time.perf_counter() - started)

        # Training: per-step wall time from the progress callback, warm-up steps left out.
        train_steps = steps or (60 if runtime.is_cuda else 30)
        stamps: list[float] = []

        def on_progress(p: dict) -> None:
            if p["stage"] == "training":
                _sync(runtime)
                stamps.append(time.perf_counter())

        spec = TrainSpec(
            photos=_photos(5, resolution), class_word="dog", token="sks", output_dir=work / "lora_a",
            prior="class-images", class_image_dir=work / "class", num_class_images=class_count, steps=train_steps,
            checkpoint_every=0, sample_seeds=(1,), sample_steps=draw_steps, report_card=False,
            class_image_steps=draw_steps,  # the class set timed above was drawn at these steps
        )
        result_a = train(spec, on_progress, pipe=pipe, runtime=runtime)
        step_ms = _step_ms(stamps)
        train_peak = _peak_memory_mb(runtime)
        remove_lora(pipe)
        lora_b = work / "lora_b.safetensors"
        shutil.copyfile(result_a.weights_path, lora_b)  # another path: a second cache entry

        drawer = Drawer(pipe, runtime)

        def time_draw(n: int, lora: Path | None) -> float:
            _sync(runtime)
            t = time.perf_counter()
            drawer.draw(DrawRequest("a photo of sks dog in paris", n=n, steps=draw_steps, seeds=[1], lora=lora))
            _sync(runtime)
            return (time.perf_counter() - t) * 1000 / n

        time_draw(1, None)  # warm-up
        draw1 = statistics.median(time_draw(1, None) for _ in range(3))
        draw4 = time_draw(4, None)
        first_load = drawer.use_lora(result_a.weights_path)
        drawer.use_lora(lora_b)
        switches = [drawer.use_lora(p) for p in (result_a.weights_path, lora_b) * 5]
        draw1_lora = time_draw(1, result_a.weights_path)

        drawer.forget_loras()
        import asyncio

        from engine.bench_scheduling import draw_latency_figures

        scheduling = asyncio.run(
            draw_latency_figures(pipe, runtime, model_dir, work, _photos(3, resolution), draw_steps)
        )

        figures: dict[str, Any] = {
            **describe(runtime),
            "model": model_name,
            "resolution": resolution,
            "train_steps": train_steps,
            "train_ms_per_step_median": round(statistics.median(step_ms), 2),
            "train_peak_memory_mb": train_peak,
            "draw_steps": draw_steps,
            "draw_ms_per_image_batch1": round(draw1, 1),
            "draw_ms_per_image_batch4": round(draw4, 1),
            "draw_ms_per_image_batch1_with_lora": round(draw1_lora, 1),
            "lora_first_load_ms": round(first_load, 2),
            "lora_switch_ms": round(statistics.median(switches), 3),
            "class_images_per_s": round(class_per_s, 3),
            **scheduling,
            "peak_memory_mb": _peak_memory_mb(runtime),
            "torch": torch.__version__,
            "diffusers": __import__("diffusers").__version__,
            "threads": torch.get_num_threads(),
        }
        return figures
    finally:
        shutil.rmtree(work, ignore_errors=True)


# CLI names (sd2 is the 768-v model); `--family all` runs each. The Qwen-based families are in it too: on CUDA their
# full-size shapes (FLUX.2 [klein] 4B, Z-Image 6B, Qwen-Image 20B with its 8B encoder) load as the others do.
BENCH_FAMILIES = ("sd1", "sd2", "sdxl", "flux", "flux-schnell", "flux2-klein", "z-image", "qwen-image")


def _family_figures(pipe, runtime, work: Path, steps: int, label: str) -> dict[str, Any]:
    """Train ms/step and draw ms/image (family defaults) for one loaded pipeline."""
    import torch

    from engine.base_model import training_resolution
    from engine.detection import family_of
    from engine.drawing import Drawer, DrawRequest
    from engine.tiny_model import count_parameters
    from engine.training import TrainSpec, remove_lora, train

    family = family_of(pipe)
    resolution = training_resolution(pipe)
    if runtime.is_cuda:
        torch.cuda.reset_peak_memory_stats(runtime.device)
    stamps: list[float] = []

    def on_progress(p: dict) -> None:
        if p["stage"] == "training":
            _sync(runtime)
            stamps.append(time.perf_counter())

    spec = TrainSpec(
        photos=_photos(5, resolution), class_word="dog", token="sks", output_dir=work / "lora",
        prior="class-images", class_image_dir=work / "class", num_class_images=2, steps=steps, checkpoint_every=0,
        sample_seeds=(), report_card=False,
    )
    train(spec, on_progress, pipe=pipe, runtime=runtime)
    step_ms = _step_ms(stamps)
    train_peak = _peak_memory_mb(runtime)
    remove_lora(pipe)
    drawer = Drawer(pipe, runtime)

    def time_draw(n: int) -> float:
        _sync(runtime)
        started = time.perf_counter()
        drawer.draw(DrawRequest("a photo of sks dog in paris", n=n, seeds=[1]))
        _sync(runtime)
        return (time.perf_counter() - started) * 1000 / n

    time_draw(1)  # warm-up
    draw1 = statistics.median(time_draw(1) for _ in range(3))
    draw4 = time_draw(4)
    return {
        "model": label,
        "family": family.name,
        "resolution": resolution,
        "parameters": count_parameters(pipe),
        "train_steps": steps,
        "train_ms_per_step_median": round(statistics.median(step_ms), 2),
        "train_peak_memory_mb": train_peak,
        "draw_steps": family.draw_steps,
        "draw_sampler": family.default_sampler,
        "draw_ms_per_image_batch1": round(draw1, 1),
        "draw_ms_per_image_batch4": round(draw4, 1),
        "peak_memory_mb": _peak_memory_mb(runtime),
    }


def family_bench_pipeline(name: str, runtime, work: Path) -> tuple[str, Any]:
    """(label, pipeline) of a family's bench model: its tiny model on the CPU (built in `work`), its full-size
    shapes with random weights on a GPU (speed does not depend on the weights' values)."""
    from engine.base_model import load_base_pipeline, prepare_pipeline
    from engine.tiny_families import CLI_FAMILIES, build_random_family
    from engine.tiny_model import build_tiny_pipeline

    if runtime.is_cuda:
        pipe = build_random_family(CLI_FAMILIES[name], runtime.device, runtime.dtype)
        prepare_pipeline(pipe, runtime)
        return f"{CLI_FAMILIES[name]}-shaped, random weights", pipe
    build_tiny_pipeline(work / "model", family=name)
    return f"tiny {name} (engine tiny-model --family {name})", load_base_pipeline(work / "model", runtime)


def run_family_bench(which: str = "all", steps: int | None = None) -> dict[str, Any]:
    """Per-family figures: the tiny models on the CPU, full-size shapes with random weights on a GPU."""
    import torch

    from engine.base_model import describe, pick_runtime
    from engine.tiny_families import CLI_FAMILIES

    names = BENCH_FAMILIES if which == "all" else tuple(n.strip() for n in which.split(","))
    unknown = [n for n in names if n not in CLI_FAMILIES]
    if unknown:
        raise ValueError(f"unknown families {unknown}; choose from {', '.join(BENCH_FAMILIES)} or all")
    runtime = pick_runtime("auto")
    steps = steps or (30 if runtime.is_cuda else 20)
    figures: dict[str, Any] = {**describe(runtime), "families": {}}
    for name in names:
        work = Path(tempfile.mkdtemp(prefix=f"kabina-bench-{name}-"))
        try:
            label, pipe = family_bench_pipeline(name, runtime, work)
            figures["families"][name] = _family_figures(pipe, runtime, work, steps, label)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            pipe = None
            if runtime.is_cuda:
                torch.cuda.empty_cache()
    figures.update(torch=torch.__version__, diffusers=__import__("diffusers").__version__,
                   threads=torch.get_num_threads())
    return figures
