"""Class images for prior preservation: generated once per (base model, prompt, resolution), shared, topped up.

They are drawn with the family's class-image recipe (steps, guidance, the model's own sampler); the cache key
(engine.base_model.base_model_key) contains the family and that recipe, and each picture records the recipe it was
drawn with (a PNG text chunk), so pictures drawn two ways never end up in one folder.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from storage.files import write_atomic_with

log = logging.getLogger(__name__)

ProgressFn = Callable[[dict], None]
StopFn = Callable[[], bool]

# Image i is always drawn from seed CLASS_SEED + i, so a cache filled by two runs equals one filled at once.
CLASS_SEED = 20_240_000


class Stopped(Exception):
    """should_stop() turned true; whatever was finished is kept."""


class ClassImageMismatch(ValueError):
    """The folder holds class images drawn another way (other steps, guidance, sampler or size)."""


# Each class image records the recipe it was drawn with in a PNG text chunk: the folder stays pictures only (other
# trainers read it as a class-data folder), and a folder filled one way is never topped up another way.
RECIPE_KEY = "kabina_recipe"


def _check_recipe(paths: list[Path], recipe: str) -> None:
    if not paths:
        return
    with Image.open(paths[0]) as image:
        found = getattr(image, "text", {}).get(RECIPE_KEY)
    if found is not None and found != recipe:
        raise ClassImageMismatch(f"{paths[0].parent} holds class images drawn with {found}, not {recipe}; use the "
                                 "folder of this recipe (base_model_key with these settings)")


def _name(index: int) -> str:
    return f"{index:05d}.png"


def existing_class_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).glob("[0-9][0-9][0-9][0-9][0-9].png"))


def _save_png(image: Image.Image, target: Path, recipe: str | None = None) -> None:
    # Storage's atomic writer: a crash never leaves a half-written picture that a later run would trust.
    info = None
    if recipe is not None:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text(RECIPE_KEY, recipe)
    write_atomic_with(target, lambda tmp: image.save(tmp, format="PNG", pnginfo=info))


def _decodes(path: Path) -> bool:
    """A cached picture is trusted only if it decodes: a damaged one is drawn again, not fed to every training."""
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as exc:
        log.warning("class image %s does not decode (%s); drawing it again", path, exc)
        return False
    return True


def ensure_class_images(
    pipe,
    folder: str | Path,
    prompt: str,
    count: int,
    resolution: int,
    *,
    steps: int | None = None,
    guidance: float | None = None,
    sampler: str | None = None,
    batch_size: int = 4,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    pause_point: Callable[[], None] | None = None,
) -> list[Path]:
    """Make sure `folder` holds at least `count` class images for `prompt`; generate only the missing ones.

    The folder is the engine's work folder for storage.keys.class_images_prefix, which keys it by base model,
    prompt and resolution, so everyone training the same class on the same model shares it. Steps, guidance and sampler
    default to the family's class-image recipe (the one base_model_key assumes).
    """
    import torch

    from engine.detection import family_of
    from engine.drawing import render

    family = family_of(pipe)
    steps = family.class_image_steps if steps is None else int(steps)
    guidance = family.class_image_guidance if guidance is None else float(guidance)
    sampler = sampler or family.class_image_sampler
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    recipe = json.dumps({"family": family.name, "prompt": prompt, "resolution": int(resolution), "steps": steps,
                         "guidance": guidance, "sampler": sampler}, sort_keys=True)
    existing = [p for p in existing_class_images(folder) if _decodes(p)]
    _check_recipe(existing, recipe)
    have = {int(p.stem) for p in existing}
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
        images = render(pipe, [prompt] * len(indices), generators, steps=steps, guidance=guidance,
                        width=resolution, height=resolution, sampler=sampler)
        for index, image in zip(indices, images, strict=True):
            _save_png(image, folder / _name(index), recipe)
        done += len(indices)
        if on_progress:
            made = start + len(indices)
            per_image = (time.monotonic() - started) / made
            eta = per_image * (len(missing) - made)
            on_progress({"stage": "class_images", "step": done, "total": count, "loss": None, "eta_s": eta})
        if pause_point is not None:
            pause_point()
    return [folder / _name(i) for i in range(count)]
