"""The /draw options a user is offered, from the running engine's published limits (only what its model takes)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.formatting import Markup, join
from bot.texts import Texts
from storage import EngineInfo
from storage.contract import ASPECT_RATIOS, MAX_IMAGES_PER_DRAW


def offered_options(info: EngineInfo) -> list[str]:
    """The flags this base model takes: FLUX has no negative prompt; FLUX.1-schnell has no guidance at all."""
    names = ["n", "steps"]
    if info.guidance_embedded or info.default_guidance > 0:
        names.append("cfg")
    names.append("seed")
    if info.negative_prompt:
        names.append("neg")
    if len(info.samplers) > 1:
        names.append("sampler")
    names += ["strength", "ar", "change"]
    return names


def _line(name: str, info: EngineInfo, t: Texts) -> Markup:
    if name == "n":
        return t("help_option_n", max=MAX_IMAGES_PER_DRAW)
    if name == "steps":
        return t("help_option_steps", example=info.default_draw_steps, max=info.max_draw_steps)
    if name == "cfg":
        key = "help_option_guidance" if info.guidance_embedded else "help_option_cfg"
        return t(key, example=f"{info.default_guidance:g}")
    if name == "sampler":
        others = [s for s in info.samplers if s != info.default_sampler] or list(info.samplers)
        return t("help_option_sampler", example=others[0], choices=", ".join(info.samplers))
    if name == "ar":
        return t("help_option_ar", choices=", ".join(a for a in ASPECT_RATIOS if a in info.sizes) or "1:1")
    return t(f"help_option_{name}")


@dataclass(frozen=True)
class OptionsHelp:
    """A text value rendered in the reader's language: "Options for /draw (FLUX.1): …"."""

    info: EngineInfo

    def render(self, t: Texts) -> Markup:
        lines = join((_line(name, self.info, t) for name in offered_options(self.info)), ", ")
        return t("help_draw_options", model=self.info.title, options=lines)


@dataclass(frozen=True)
class OptionNames:
    """The bare flags this model takes, for a refusal that lists them."""

    info: EngineInfo

    def render(self, t: Texts) -> Markup:
        return join((f"--{name}" for name in offered_options(self.info)), ", ")
