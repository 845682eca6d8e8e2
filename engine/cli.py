"""The engine's command line: thin shells over the library (and the worker when no command is given)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger("engine")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Kabina's DreamBooth-LoRA engine.")
    sub = parser.add_subparsers(dest="command")

    worker = sub.add_parser("worker", help="serve jobs from the queue (the default)")
    _worker_options(worker)

    train = sub.add_parser("train", help="train a LoRA from a folder of photos")
    train.add_argument("--photos", required=True, type=Path, help="folder of photos of one subject")
    train.add_argument("--class", dest="class_word", required=True, help="what the subject is: dog, person, …")
    train.add_argument("--out", required=True, type=Path, help="folder for the LoRA files and samples")
    train.add_argument("--token", default=None, help="identifier token (default: the first of the pool)")
    train.add_argument("--steps", type=int, default=None, help="training steps (default: TRAIN_STEPS or auto)")
    train.add_argument("--prior", choices=("class-images", "output", "off"), default=None,
                       help="prior preservation (default: PRIOR, else the family's)")
    train.add_argument("--num-class-images", type=int, default=None, help="default: NUM_CLASS_IMAGES")
    train.add_argument("--resolution", default=None,
                       help="training side in pixels or native (default: TRAIN_RESOLUTION, else the family's)")
    train.add_argument("--class-images", type=Path, default=None, help="class image folder (default: DATA_DIR cache)")
    train.add_argument("--text-encoder", action="store_true", help="also train a text-encoder LoRA")
    train.add_argument("--base-model", type=Path, default=None, help="default: BASE_MODEL")
    train.add_argument("--vae", type=Path, default=None, help="another VAE (folder or file), e.g. SDXL's fp16-fix VAE")

    draw = sub.add_parser("draw", help="draw pictures with a LoRA")
    draw.add_argument("prompt")
    draw.add_argument("--lora", type=Path, default=None, help="a LoRA .safetensors (default: the base model)")
    draw.add_argument("--out", required=True, type=Path)
    draw.add_argument("--n", type=int, default=4)
    draw.add_argument("--seed", type=int, default=None)
    draw.add_argument("--steps", type=int, default=None, help="default: DRAW_STEPS if set, else the family's")
    draw.add_argument("--guidance", type=float, default=None, help="default: the family's")
    draw.add_argument("--negative", default="")
    draw.add_argument("--width", type=int, default=None)
    draw.add_argument("--height", type=int, default=None)
    draw.add_argument("--ar", default=None, help="aspect ratio instead of a size: 1:1, 3:2, 2:3, 16:9, 9:16")
    draw.add_argument("--sampler", default=None,
                      help="dpm++2m-karras, euler-a, euler, ddim or default (FLUX: default, euler, dpm++2m)")
    draw.add_argument("--strength", type=float, default=1.0, help="LoRA strength, 0 (the base model) to 2")
    draw.add_argument("--base-model", type=Path, default=None, help="default: BASE_MODEL")
    draw.add_argument("--vae", type=Path, default=None, help="another VAE (folder or file)")

    random_model = sub.add_parser(
        "random-model", help="write a full-size pipeline with random weights (for GPU benchmarks; images are noise)"
    )
    random_model.add_argument("dir", type=Path)
    random_model.add_argument("--config", type=Path, default=None, help="config folder (default: engine/configs/sd15)")
    tiny = sub.add_parser("tiny-model", help="write a tiny random pipeline of a family (its images are noise)")
    tiny.add_argument("dir", type=Path)
    tiny.add_argument("--family", default="sd1",
                      choices=("sd1", "sd1-clip", "sd2", "sd2-base", "sdxl", "flux", "flux-schnell", "flux2-klein",
                               "z-image", "z-image-turbo", "qwen-image"),
                      help="sd1 (the default), sd2 (768-v), sd2-base, sdxl, flux (dev), flux-schnell, flux2-klein, "
                           "z-image, z-image-turbo (name its folder so) or qwen-image")
    tiny.add_argument("--single-file", action="store_true",
                      help="flux/flux-schnell: BFL's transformer file DIR.safetensors, the other components in DIR/")

    sub.add_parser("eval-toy", help="measure DreamBooth in the toy world (JSON): fidelity and class drift",
                   add_help=False)
    bench = sub.add_parser("bench", help="print speed and memory figures as one JSON object")
    bench.add_argument("--base-model", type=Path, default=None, help="default: tiny on CPU, full-size shapes on CUDA")
    bench.add_argument("--family", default=None,
                       help="sd1, sd2, sdxl, flux, flux-schnell, flux2-klein, z-image, qwen-image (comma-separated) "
                            "or all: per-family train/draw figures (default: the SD1 bench with scheduling figures)")
    bench.add_argument("--steps", type=int, default=None, help="training steps to time")
    bench.add_argument("--time-to-model", action="store_true",
                       help="photos → ready model per phase, recipes paper and default, cold and warm (--family: one)")
    bench.add_argument("--photos", type=int, default=4, help="--time-to-model: photos per training")
    bench.add_argument("--num-class-images", type=int, default=None,
                       help="--time-to-model: the paper recipe's class set (default: the family's)")
    bench.add_argument("--draw-steps", type=int, default=None,
                       help="sampler steps of every draw (default: 25; --time-to-model: per recipe)")
    bench.add_argument("--compile", action="store_true",
                       help="eager against torch.compile'd drawing with LoRA hot-swap (--family: one; default sd1)")
    bench.add_argument("--compile-backend", default="inductor",
                       help="--compile: torch.compile backend (inductor; eager to time tracing and guards alone)")
    bench.add_argument("--out", type=Path, default=None, help="also write the JSON to this file (docs/bench/…)")
    return parser


def _worker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--worker-id", default=None)
    parser.add_argument("--lease-s", type=float, default=30.0, help="job lease; renewed by heartbeats")
    parser.add_argument("--poll-s", type=float, default=1.0, help="how often to look for work when idle")
    parser.add_argument("--checkpoint-every", type=int, default=100, help="training steps between checkpoints")
    parser.add_argument("--cache-sweep-s", type=float, default=30.0,
                        help="how often this host drops its copies of blobs deleted from the store")
    parser.add_argument("--once", action="store_true", help="exit once no job is queued or running anywhere (tests, batch runs)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        argv = ["worker", *argv]
    if argv[0] == "eval-toy":
        # The toy world is developer tooling (tools/toy), present in a checkout, not in an installed engine.
        try:
            from tools.toy.evaluation import eval_toy_main
        except ModuleNotFoundError:
            print("eval-toy needs a Kabina checkout (tools/toy); run it from the repository", file=sys.stderr)
            return 2
        from storage.logs import setup_logging

        setup_logging("engine")
        return eval_toy_main(argv[1:])
    args = _parser().parse_args(argv)
    from storage.logs import setup_logging

    setup_logging("engine")
    if args.command == "tiny-model":
        return _tiny_model(args)
    if args.command == "random-model":
        return _random_model(args)
    from engine.base_model import BaseModelError
    from storage import ConfigError, load_settings

    # A base model that is missing, unreadable or of a family Kabina does not serve ends every command the same
    # way: one line naming what was found and what is supported, and exit status 2 (never a traceback).
    try:
        if args.command == "bench":
            return _bench(args, argv)
        settings = load_settings()
        # LOG_LEVEL and LOG_FORMAT may come from .env, which only the settings read.
        setup_logging("engine", level=settings.log_level, fmt=settings.log_format)
        if args.command == "train":
            return _train(args, settings)
        if args.command == "draw":
            return _draw(args, settings)
        from engine.worker import run_worker

        return run_worker(settings, args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except BaseModelError as exc:
        print(f"base model refused: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


def _bench(args, argv: list[str]) -> int:
    from engine.bench import run_bench, run_family_bench

    if args.time_to_model:
        from engine.bench_time_to_model import run_time_to_model

        figures = run_time_to_model(args.family or "sd1", args.steps, args.photos, args.num_class_images,
                                    args.draw_steps)
    elif args.compile:
        from engine.bench_compile import run_compile_bench

        figures = run_compile_bench(args.family, args.compile_backend, args.draw_steps)
    elif args.family:
        figures = run_family_bench(args.family, args.steps)
    else:
        figures = run_bench(args.base_model, args.steps, args.draw_steps)
    figures["command"] = "python -m engine " + " ".join(argv)
    print(json.dumps(figures))
    if args.out is not None:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def _tiny_model(args) -> int:
    from engine.tiny_model import NOTICE, build_tiny_pipeline, count_parameters

    if args.single_file and args.family not in ("flux", "flux-schnell"):
        print("--single-file is for FLUX.1 (--family flux or flux-schnell)", file=sys.stderr)
        return 2
    pipe = build_tiny_pipeline(args.dir, family=args.family)
    print(f"wrote {args.dir} ({count_parameters(pipe):,} parameters, {type(pipe).__name__})")
    if args.single_file:
        from engine.flux_single_file import split_flux_folder

        checkpoint = split_flux_folder(args.dir, args.dir.parent / f"{args.dir.name}.safetensors")
        print(f"moved its transformer to {checkpoint} (BFL's single-file layout); BASE_MODEL={checkpoint} loads it "
              f"with the components in {args.dir}")
    print(NOTICE, end="")
    return 0


def _random_model(args) -> int:
    """An SD1.5-shaped folder for the reference trainer, which needs weights on disk (speed ignores their values)."""
    import torch

    from engine.base_model import CONFIGS_DIR
    from engine.tiny_model import build_random_pipeline, count_parameters

    pipe = build_random_pipeline(args.config or CONFIGS_DIR / "sd15", "cpu", torch.float16)
    pipe.save_pretrained(str(args.dir))
    print(f"wrote {args.dir} ({count_parameters(pipe):,} random parameters, fp16; its images are noise)")
    return 0


def _base_model(args, settings) -> Path:
    return args.base_model or settings.require_base_model()


def _data_folder(settings, prefix: str) -> Path:
    """A shared cache folder under DATA_DIR, named by its blob key prefix (storage/keys.py)."""
    folder = Path(settings.data_dir).expanduser().resolve() / prefix
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _train(args, settings) -> int:
    from tqdm import tqdm

    from engine.base_model import base_model_key, load_base_pipeline, pick_runtime, train_resolution
    from engine.conditioning import identifier_pool
    from engine.detection import family_of
    from engine.photos import load_photo_folder
    from engine.tokens import class_prompt
    from engine.training import TrainingStopped, TrainSpec, prior_for, train
    from storage.keys import class_images_prefix, report_before_prefix

    base = _base_model(args, settings)
    runtime = pick_runtime(settings.device)
    pipe = load_base_pipeline(base, runtime, vae=args.vae)
    resolution = train_resolution(pipe, args.resolution or settings.train_resolution)
    photo_set = load_photo_folder(args.photos, resolution)
    for r in photo_set.rejected:
        print(f"skipped {r.name}: {r.reason} ({r.message})", file=sys.stderr)
    if not photo_set.images:
        print("no usable photos", file=sys.stderr)
        return 1
    token = args.token or identifier_pool(pipe)[0]
    prior = prior_for(family_of(pipe), args.prior or settings.prior)
    key, prompt = base_model_key(base), class_prompt(args.class_word)
    class_dir = args.class_images
    if class_dir is None and prior == "class-images":
        class_dir = _data_folder(settings, class_images_prefix(key, prompt, resolution))
    num_class = settings.num_class_images if args.num_class_images is None else args.num_class_images
    spec = TrainSpec(
        photos=photo_set.images, class_word=args.class_word, token=token, output_dir=args.out, prior=prior,
        class_image_dir=class_dir, num_class_images=num_class, checkpoint_dir=args.out / "checkpoints",
        steps=args.steps or settings.train_steps, train_text_encoder=args.text_encoder, resolution=resolution,
        before_dir=_data_folder(settings, report_before_prefix(key, prompt, resolution)),
        sample_steps=settings.draw_steps,  # samples and report card: DRAW_STEPS when set, else the family's
    )
    bars: dict[str, tqdm] = {}

    def on_progress(p: dict) -> None:
        bar = bars.get(p["stage"])
        if bar is None:
            for finished in bars.values():
                finished.close()
            bar = bars[p["stage"]] = tqdm(total=p["total"], desc=p["stage"], unit="step")
        bar.n = p["step"]
        if p.get("loss") is not None:
            bar.set_postfix(loss=f"{p['loss']:.4f}")
        bar.refresh()

    try:
        result = train(spec, on_progress, pipe=pipe, runtime=runtime)
    except TrainingStopped as exc:
        print(f"stopped at step {exc.step}; run again to resume", file=sys.stderr)
        return 1
    finally:
        for bar in bars.values():
            bar.close()
    print(f"token: {token}  prompt: {spec.instance_prompt}")
    print(f"LoRA: {result.weights_path}\nkohya copy: {result.kohya_path}")
    for path in result.sample_paths:
        print(f"sample: {path}")
    if result.report_card_path is not None:
        print(f"report card: {result.report_card_path}  (class drift {result.class_drift:.3f})")
    return 0


def _draw(args, settings) -> int:
    from engine.base_model import load_base_pipeline, pick_runtime
    from engine.drawing import Drawer, DrawError, DrawRequest

    runtime = pick_runtime(settings.device)
    drawer = Drawer(load_base_pipeline(_base_model(args, settings), runtime, vae=args.vae), runtime)
    # DRAW_STEPS only when the operator set it: its built-in 25 would override FLUX.1-schnell's 4.
    configured = settings.draw_steps if "draw_steps" in settings.model_fields_set else None
    request = DrawRequest(
        prompt=args.prompt, negative_prompt=args.negative, n=args.n, steps=args.steps or configured,
        guidance=args.guidance, seeds=None if args.seed is None else [args.seed], width=args.width,
        height=args.height, lora=args.lora, sampler=args.sampler, strength=args.strength, aspect_ratio=args.ar,
    )
    try:
        result = drawer.draw(request)
    except DrawError as exc:
        print(f"cannot draw: {exc}", file=sys.stderr)
        return 1
    if result.prompt_truncated:
        print(f"note: the prompt has {result.prompt_tokens} tokens; only the first {result.token_limit} are read",
              file=sys.stderr)
    if result.negative_truncated:
        print(f"note: the negative prompt has {result.negative_tokens} tokens; only the first {result.token_limit} "
              "are read", file=sys.stderr)
    print(f"{result.family}: {result.width}x{result.height}, {result.steps} steps, {result.sampler}, guidance "
          f"{result.guidance}, strength {result.strength}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    for image, seed in zip(result.images, result.seeds, strict=True):
        path = args.out / f"seed_{seed}.png"
        image.save(path)
        print(path)
    return 0
