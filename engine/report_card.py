"""The report card sent after training: the bare class prompt before vs after at fixed seeds, with the drift number."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from engine.metrics import class_drift

# Seeds the report card always draws, so two trainings of one user can be compared card by card.
REPORT_SEEDS: tuple[int, ...] = (11, 22, 33, 44)

# Above this drift the bare class prompt no longer draws the class the base model drew: the user's subject has
# leaked into it ("every dog now looks like yours"). What 0.14 means in the metric's own terms
# (engine.metrics.picture_distance): the average of the share of colour mass that moved and the mean change
# of the 8x8 layout, so about a quarter of the picture took another colour, on every seed on average. Where it
# comes from: in the toy world (python -m engine.toy eval: 4 photos, 400 steps, lr 2e-3, rank 8, 64 class
# images) DreamBooth with prior preservation measured 0.129 and the same run without the prior term 0.157;
# the threshold sits between them. It has not been calibrated on a real SD1.5 model (none is available offline
# here): recheck it on the first real trainings before trusting it for users.
DRIFT_WARNING_THRESHOLD = 0.14


def drift_warning(drift: float) -> bool:
    """True when the class prompt moved far enough that the user should retrain with fewer steps."""
    return drift > DRIFT_WARNING_THRESHOLD


@dataclass
class ReportCard:
    before: list[Image.Image]
    after: list[Image.Image]
    drift: float
    image: Image.Image

    @property
    def warn(self) -> bool:
        return drift_warning(self.drift)


def _set_lora(pipe, enabled: bool) -> None:
    if enabled:
        pipe.enable_lora()
    else:
        pipe.disable_lora()


def class_before_after(pipe, class_word: str, seeds: Sequence[int] = REPORT_SEEDS, steps: int = 25,
                       guidance: float | None = None, resolution: int | None = None) -> tuple[list[Image.Image], list[Image.Image]]:
    """`a photo of <class>` with the pipeline's active LoRA switched off, then on, at the same seeds.

    Guidance None is the family's (7.5 SD1.x/SD2.x, 5 SDXL, 3.5 FLUX.1-dev); the call goes through the family's
    pipeline arguments (FLUX takes no negative prompt and its own T5 length).
    """
    import torch

    from engine.base_model import training_resolution
    from engine.detection import family_of
    from engine.drawing import render
    from engine.tokens import class_prompt

    size = resolution or training_resolution(pipe)
    prompt = class_prompt(class_word)
    guidance = family_of(pipe).guidance if guidance is None else guidance

    def draw() -> list[Image.Image]:
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        return render(pipe, [prompt] * len(seeds), generators, steps=steps, guidance=guidance, width=size,
                      height=size)

    _set_lora(pipe, False)
    try:
        before = draw()
    finally:
        _set_lora(pipe, True)
    return before, draw()


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType: the bitmap font, fixed size
        return ImageFont.load_default()


def compose(before: Sequence[Image.Image], after: Sequence[Image.Image], drift: float, *,
            labels: tuple[str, str] = ("before", "after"), tile: int = 128) -> Image.Image:
    """Two rows of tiles (base model above, trained below) and a footer with the drift figure.

    Labels come from the caller so the bot can pass its own language; the footer shows only the number and a
    red or green bar, which read the same in any language.
    """
    columns = max(len(before), len(after))
    label_w, footer_h = tile // 2 + 16, 32
    card = Image.new("RGB", (label_w + columns * tile, 2 * tile + footer_h), "white")
    pen = ImageDraw.Draw(card)
    font = _font(max(10, tile // 8))
    for row, (label, images) in enumerate(((labels[0], before), (labels[1], after))):
        top = row * tile
        pen.text((6, top + tile // 2), label, fill="black", font=font, anchor="lm")
        for col, image in enumerate(images):
            card.paste(image.convert("RGB").resize((tile, tile), Image.Resampling.LANCZOS), (label_w + col * tile, top))
    top = 2 * tile
    warn = drift_warning(drift)
    colour = (200, 40, 40) if warn else (40, 150, 60)
    share = min(1.0, drift / (2 * DRIFT_WARNING_THRESHOLD))
    bar_left, bar_right = label_w, card.width - 8
    pen.rectangle([bar_left, top + 8, bar_right, top + footer_h - 8], outline=(160, 160, 160))
    pen.rectangle([bar_left, top + 8, bar_left + int((bar_right - bar_left) * share), top + footer_h - 8], fill=colour)
    mark = bar_left + (bar_right - bar_left) // 2  # the warning threshold sits mid-bar
    pen.line([mark, top + 4, mark, top + footer_h - 4], fill="black", width=1)
    pen.text((6, top + footer_h // 2), f"drift {drift:.2f}", fill=colour, font=_font(14), anchor="lm")
    return card


def report_card(pipe, class_word: str, seeds: Sequence[int] = REPORT_SEEDS, steps: int = 25, guidance: float | None = None,
                labels: tuple[str, str] = ("before", "after")) -> ReportCard:
    """Draw the class prompt without and with the active LoRA, measure the drift, and lay out the card."""
    before, after = class_before_after(pipe, class_word, seeds, steps, guidance)
    drift = class_drift(before, after)
    return ReportCard(before, after, drift, compose(before, after, drift, labels=labels))
