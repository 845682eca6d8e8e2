"""`python -m engine bench --compile`: whether a compiled denoiser (COMPILE_DENOISER) pays, measured.

Draws the same requests with the eager denoiser and with the compiled one, alternating two users' LoRAs of
different ranks, a strength change and a base-model draw, and reports milliseconds per image, LoRA switch time,
the compile time of the first draws, how many images it takes to earn that back, and how many recompiles happened
after the warm-up (torch._dynamo's own count of graphs; switching must add none).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def random_lora(pipe, target: Path, rank: int, seed: int) -> Path:
    """A LoRA of `pipe`'s family with random non-zero weights at `rank`, saved the way a training saves one."""
    import torch
    from peft import LoraConfig

    from engine.detection import family_of
    from engine.lora_files import ADAPTER, save_lora

    family = family_of(pipe)
    model = getattr(pipe, family.denoiser)
    torch.manual_seed(seed)
    model.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                 target_modules=family.lora_target_modules), adapter_name=ADAPTER)
    try:
        return save_lora(target, pipe)
    finally:
        pipe.delete_adapters(ADAPTER)


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def compile_figures(pipe, runtime, work: Path, backend: str, draw_steps: int | None, rounds: int = 3) -> dict[str, Any]:
    """Eager against compiled drawing of one loaded pipeline (its denoiser is compiled in place of the eager one
    for text-to-image draws only; the pipeline is otherwise left as it was)."""
    import torch

    from engine.compiled_denoiser import CompileOptions, slot_rank
    from engine.detection import family_of
    from engine.drawing import Drawer, DrawRequest

    family = family_of(pipe)
    rank = slot_rank(pipe)
    mine = random_lora(pipe, work / "mine.safetensors", rank, seed=1)
    theirs = random_lora(pipe, work / "theirs.safetensors", max(1, rank // 2), seed=2)
    steps = draw_steps or family.draw_steps

    def sync() -> None:
        if runtime.is_cuda:
            torch.cuda.synchronize(runtime.device)

    def timed(drawer: Drawer, lora: Path | None, strength: float = 1.0) -> tuple[float, float]:
        """(ms for the draw, ms of it spent switching the LoRA)"""
        sync()
        started = time.perf_counter()
        result = drawer.draw(DrawRequest("a photo of sks dog in paris", n=1, steps=steps, seeds=[1], lora=lora,
                                         strength=strength))
        sync()
        return (time.perf_counter() - started) * 1000, result.lora_switch_ms

    sequence = [(mine, 1.0), (theirs, 1.0), (mine, 0.6), (None, 1.0)] * rounds

    def run(drawer: Drawer) -> dict[str, float]:
        draws = [timed(drawer, lora, strength) for lora, strength in sequence]
        with_lora = [ms for (ms, _), (lora, _) in zip(draws, sequence, strict=True) if lora is not None]
        switches = [switch for (_, switch), (lora, _) in zip(draws, sequence, strict=True) if lora is not None]
        return {"ms_per_image": statistics.median(with_lora), "switch_ms": statistics.median(switches)}

    eager_drawer = Drawer(pipe, runtime)
    timed(eager_drawer, mine)  # warm-up: first LoRA load, allocator
    eager = run(eager_drawer)
    eager_drawer.forget_loras()

    torch._dynamo.reset()
    compiled_drawer = Drawer(pipe, runtime, compile=CompileOptions(backend=backend))
    graphs_before = _graphs()
    first_ms = [timed(compiled_drawer, lora)[0] for lora in (None, mine)]  # the bare graph, then the slot's
    warm_graphs = _graphs()
    compiled = run(compiled_drawer)
    recompiles = _graphs() - warm_graphs
    compiled_drawer.forget_loras()
    torch._dynamo.reset()

    compile_ms = sum(first_ms) - 2 * compiled["ms_per_image"]
    saved = eager["ms_per_image"] - compiled["ms_per_image"]
    return {
        "family": family.name,
        "backend": backend,
        "draw_steps": steps,
        "slot_rank": rank,
        "eager_ms_per_image": round(eager["ms_per_image"], 1),
        "compiled_ms_per_image": round(compiled["ms_per_image"], 1),
        "speedup": round(eager["ms_per_image"] / compiled["ms_per_image"], 3),
        "compile_seconds": round(compile_ms / 1000, 2),
        "graphs_compiled": warm_graphs - graphs_before,
        "images_to_pay_back": round(compile_ms / saved) if saved > 0 else None,
        "lora_switch_ms_eager": round(eager["switch_ms"], 2),
        "lora_switch_ms_compiled": round(compiled["switch_ms"], 2),
        "draws_after_warmup": len(sequence),
        "recompiles_after_warmup": recompiles,
    }


def run_compile_bench(family: str | None = None, backend: str = "inductor",
                      draw_steps: int | None = None) -> dict[str, Any]:
    """The tiny model of `family` (default sd1) on the CPU; its full-size shapes with random weights on a GPU."""
    import torch

    from engine.base_model import describe, pick_runtime
    from engine.bench import family_bench_pipeline
    from engine.tiny_families import CLI_FAMILIES

    name = family or "sd1"
    if name not in CLI_FAMILIES:
        raise ValueError(f"unknown family {name!r}; choose from {', '.join(CLI_FAMILIES)}")
    runtime = pick_runtime("auto")
    work = Path(tempfile.mkdtemp(prefix="kabina-bench-compile-"))
    try:
        label, pipe = family_bench_pipeline(name, runtime, work)
        figures = compile_figures(pipe, runtime, work, backend, draw_steps)
        return {**describe(runtime), "model": label, "compile": figures, "torch": torch.__version__,
                "diffusers": __import__("diffusers").__version__, "threads": torch.get_num_threads()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
