"""Class images for prior preservation: generated once per (base model, prompt, resolution), shared, topped up."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

ProgressFn = Callable[[dict], None]
StopFn = Callable[[], bool]

# Image i is always drawn from seed CLASS_SEED + i, so a cache filled by two runs equals one filled at once.
CLASS_SEED = 20_240_000


class Stopped(Exception):
    """should_stop() turned true; whatever was finished is kept."""


def _name(index: int) -> str:
    return f"{index:05d}.png"


def existing_class_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).glob("[0-9][0-9][0-9][0-9][0-9].png"))


def _save_png(image: Image.Image, target: Path) -> None:
    # Temp file + rename: a crash never leaves a half-written picture that a later run would trust.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".partial-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            image.save(handle, format="PNG")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_class_images(
    pipe,
    folder: str | Path,
    prompt: str,
    count: int,
    resolution: int,
    *,
    steps: int = 25,
    batch_size: int = 4,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    pause_point: Callable[[], None] | None = None,
) -> list[Path]:
    """Make sure `folder` holds at least `count` class images for `prompt`; generate only the missing ones.

    The folder comes from storage (store.files.class_image_dir), which keys it by base model, prompt and
    resolution, so everyone training the same class on the same model shares it.
    """
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    have = {int(p.stem) for p in existing_class_images(folder)}
    missing = [i for i in range(count) if i not in have]
    started = time.monotonic()
    done = count - len(missing)
    if on_progress:
        on_progress({"stage": "class_images", "step": done, "total": count, "loss": None, "eta_s": None})
    for start in range(0, len(missing), batch_size):
        if should_stop and should_stop():
            raise Stopped("stopped while generating class images")
        indices = missing[start : start + batch_size]
        generators = [torch.Generator(device="cpu").manual_seed(CLASS_SEED + i) for i in indices]
        with torch.inference_mode():
            images = pipe(
                prompt=[prompt] * len(indices),
                num_inference_steps=steps,
                guidance_scale=7.5,
                height=resolution,
                width=resolution,
                generator=generators,
            ).images
        for index, image in zip(indices, images, strict=True):
            _save_png(image, folder / _name(index))
        done += len(indices)
        if on_progress:
            made = start + len(indices)
            per_image = (time.monotonic() - started) / made
            eta = per_image * (len(missing) - made)
            on_progress({"stage": "class_images", "step": done, "total": count, "loss": None, "eta_s": eta})
        if pause_point is not None:
            pause_point()
    return [folder / _name(i) for i in range(count)]
