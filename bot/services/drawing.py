"""/draw requests: option parsing, finding the model a prompt names, and the draw job payload."""

from __future__ import annotations

import re
import secrets
import shlex
import time
from dataclasses import dataclass
from typing import Any

from bot.delivery.outbox import drawing_notes
from bot.formatting import Markup, code, echo_safe, fit_lines
from bot.services import Refusal
from bot.services.models import handles_for
from bot.services.options_help import OptionNames, OptionsHelp
from storage import DrawPayload, EngineInfo, Job, Model, Preferences, Storage
from storage.contract import (
    ASPECT_RATIOS,
    MAX_GUIDANCE,
    MAX_IMAGE_CHANGE,
    MAX_IMAGES_PER_DRAW,
    MAX_NEGATIVE_CHARS,
    MAX_PROMPT_CHARS,
    MAX_STRENGTH,
    MIN_GUIDANCE,
    MIN_IMAGE_CHANGE,
)

OPTIONS = ("n", "steps", "cfg", "seed", "neg", "sampler", "strength", "ar", "change")
VARIATION_STRENGTH = 0.3
BURST_S = 60.0  # refusals this close together are one burst: the user hears about the limit once
_WORD = re.compile(r"[\w]+", re.UNICODE)


class DrawInputError(Refusal):
    """Something in the /draw text the user should fix."""


@dataclass(frozen=True)
class DrawOptions:
    n: int = 1
    steps: int | None = None  # None: DRAW_STEPS, else the family's default
    cfg: float | None = None  # None: the base model family's own default
    seed: int | None = None
    negative: str = ""
    sampler: str | None = None  # None: the family's default (DPM++ 2M Karras for SD)
    strength: float = 1.0  # how much of the trained model: 0 is the base picture
    aspect_ratio: str | None = None
    change: float | None = None  # drawing from a picture: how much of it is redrawn (None: the default)


def max_prompt_words(info: EngineInfo) -> int:
    """Words a prompt may have: about four fifths of the tokens the text encoder reads (CLIP 75 → 60 words;
    FLUX's T5 reads far more), so a prompt is not cut silently."""
    return max(20, info.token_limit * 4 // 5)


def max_prompt_chars(info: EngineInfo) -> int:
    """Characters to match: seven per word is generous for English (CLIP's 60 words → 420)."""
    return min(MAX_PROMPT_CHARS, 7 * max_prompt_words(info))


def _number(name: str, raw: str, kind: type, low: float, high: float) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        raise DrawInputError("draw_bad_option", option=name, low=low, high=high) from None
    if not low <= value <= high:
        raise DrawInputError("draw_bad_option", option=name, low=low, high=high)
    return value


def preferred_options(prefs: Preferences | None, default_steps: int | None, info: EngineInfo) -> dict[str, Any]:
    """The user's /settings as /draw's starting options; a choice the running model no longer takes (another
    family's sampler, more steps than it allows) is left out rather than refused."""
    options: dict[str, Any] = {"steps": default_steps}
    if prefs is None:
        return options
    if prefs.steps is not None and prefs.steps <= info.max_draw_steps:
        options["steps"] = prefs.steps
    if prefs.sampler is not None and prefs.sampler in info.samplers:
        options["sampler"] = prefs.sampler
    if prefs.aspect_ratio is not None and prefs.aspect_ratio in info.sizes:
        options["aspect_ratio"] = prefs.aspect_ratio
    if prefs.n is not None:
        options["n"] = prefs.n
    if prefs.strength is not None:
        options["strength"] = prefs.strength
    return options


def parse_draw(
    text: str, default_steps: int | None, info: EngineInfo | None = None, prefs: Preferences | None = None
) -> tuple[str, DrawOptions]:
    """Split `/draw` arguments into the prompt and its options, checked against what the base model allows
    (`info`: the running engine's family limits; SD1.x's before any engine has started). The user's /settings
    (`prefs`) fill in what the text does not say; a flag in the text wins for this draw."""
    info = info or EngineInfo()
    # Phones turn "--" into an em dash and quotes into curly ones; read them as the user meant.
    text = text.replace("\u2014", "--").replace("\u2013", "--")
    text = text.replace("\u201c", '"').replace("\u201d", '"').replace("\u00ab", '"').replace("\u00bb", '"')
    try:
        parts = shlex.split(text)
    except ValueError:
        raise DrawInputError("draw_bad_quotes") from None
    words: list[str] = []
    options = preferred_options(prefs, default_steps, info)
    index = 0
    while index < len(parts):
        part = parts[index]
        if not part.startswith("--"):
            words.append(part)
            index += 1
            continue
        name = part[2:].lower()
        if name not in OPTIONS:
            if echo_safe(part):
                raise DrawInputError("draw_unknown_option", option=part, options=OptionNames(info))
            raise DrawInputError("draw_unknown_option_unnamed", options=OptionNames(info))
        if index + 1 >= len(parts):
            raise DrawInputError("draw_missing_value", option=part)
        raw = parts[index + 1]
        index += 2
        _read_option(name, raw, options, info)
    prompt = " ".join(words).strip()
    if not prompt:
        raise DrawInputError("draw_usage", options=OptionsHelp(info))
    limit, chars = max_prompt_words(info), max_prompt_chars(info)
    if len(prompt) > chars or len(_WORD.findall(prompt)) > limit:
        raise DrawInputError("draw_prompt_too_long", words=limit, chars=chars)
    return prompt, DrawOptions(**options)


def _read_option(name: str, raw: str, options: dict[str, Any], info: EngineInfo) -> None:
    if name == "n":
        options["n"] = _number("--n", raw, int, 1, MAX_IMAGES_PER_DRAW)
    elif name == "steps":
        options["steps"] = _number("--steps", raw, int, 1, info.max_draw_steps)
    elif name == "cfg":
        options["cfg"] = _number("--cfg", raw.replace(",", "."), float, MIN_GUIDANCE, MAX_GUIDANCE)
    elif name == "seed":
        options["seed"] = _number("--seed", raw, int, 0, 2**32 - 1)
    elif name == "strength":
        options["strength"] = _number("--strength", raw.replace(",", "."), float, 0, MAX_STRENGTH)
    elif name == "sampler":
        sampler = raw.lower()
        if sampler not in info.samplers:
            if echo_safe(raw):
                raise DrawInputError("draw_bad_sampler", sampler=raw, choices=", ".join(info.samplers),
                                     model=info.title)
            raise DrawInputError("draw_bad_sampler_unnamed", choices=", ".join(info.samplers), model=info.title)
        options["sampler"] = sampler
    elif name == "change":
        options["change"] = _number("--change", raw.replace(",", "."), float, MIN_IMAGE_CHANGE, MAX_IMAGE_CHANGE)
    elif name == "ar":
        if raw not in ASPECT_RATIOS:
            raise DrawInputError("draw_bad_ar", ar=raw, choices=", ".join(ASPECT_RATIOS))
        options["aspect_ratio"] = raw
    else:
        if not info.negative_prompt:
            raise DrawInputError("draw_no_negative", model=info.title)
        if len(raw) > MAX_NEGATIVE_CHARS or len(_WORD.findall(raw)) > max_prompt_words(info):
            raise DrawInputError("draw_negative_too_long", limit=MAX_NEGATIVE_CHARS, words=max_prompt_words(info))
        options["negative"] = raw


@dataclass(frozen=True)
class ResolvedPrompt:
    model: Model
    prompt: str  # with chat handles such as sks_7 turned back into the model's token


def resolve_model(
    prompt: str, models: list[Model], default_model_id: int | None, fallback: Model | None = None
) -> ResolvedPrompt:
    """The one model whose identifier (or handle, where identifiers clash) the prompt names; a prompt naming none
    draws `fallback` (the user's default, or the one model a group shares), its identifier put in for the user."""
    handles = handles_for(models)
    by_handle = {handle: m for m, handle in ((m, handles[m.id]) for m in models if m.id in handles)}
    by_token: dict[str, list[Model]] = {}
    for model in models:
        if model.token:
            by_token.setdefault(model.token.lower(), []).append(model)
    chosen: dict[int, Model] = {}
    for word in _WORD.findall(prompt.lower()):
        if word in by_handle:
            chosen[by_handle[word].id] = by_handle[word]
        elif word in by_token:
            candidates = by_token[word]
            preferred = [m for m in candidates if m.id == default_model_id]
            if len(candidates) == 1 or preferred:
                pick = preferred[0] if preferred else candidates[0]
                chosen[pick.id] = pick
            else:
                raise DrawInputError("draw_ambiguous", choices=_choices(candidates, handles))
    if not chosen and fallback is not None and fallback.token:
        return ResolvedPrompt(model=fallback, prompt=f"{fallback.token} {fallback.class_word}, {prompt}")
    if not chosen:
        raise DrawInputError("draw_no_identifier", choices=_choices(models, handles))
    if len(chosen) > 1:
        raise DrawInputError("draw_two_models")
    model = next(iter(chosen.values()))
    text = prompt
    for handle, target in by_handle.items():
        if target.id == model.id and target.token and handle != target.token.lower():
            text = re.sub(rf"(?i)\b{re.escape(handle)}\b", target.token, text)
    return ResolvedPrompt(model=model, prompt=text)


CHOICES_CHARS = 3000  # the reply around the list stays under Telegram's 4,096 characters


def _choices(models: list[Model], handles: dict[int, str]) -> Markup:
    lines = [Markup(f"• {code(f'{handles[m.id]} {m.class_word}')}") for m in models if m.id in handles]
    return fit_lines(lines, CHOICES_CHARS, lambda left_out: Markup(f"… (+{left_out})"))[0]


def fallback_model(models: list[Model], default_model_id: int | None, private: bool) -> Model | None:
    """The model a prompt without an identifier draws: in a private chat the user's default if usable, else their
    only model; in a group, the model shared there if it is the only one."""
    if private:
        default = next((m for m in models if m.id == default_model_id), None)
        if default is not None:
            return default
    return models[0] if len(models) == 1 else None


_CYRILLIC = re.compile(r"[\u0400-\u04FF]")


def has_cyrillic(prompt: str) -> bool:
    """A prompt with Cyrillic words in it: the text encoders read English best (a hint, never a refusal)."""
    return bool(_CYRILLIC.search(prompt))


def draw_payload(model: Model, prompt: str, options: DrawOptions) -> DrawPayload:
    seeds = [options.seed + i for i in range(options.n)] if options.seed is not None else None
    # width/height stay None: the base model's own resolution (the engine rounds to what the UNet accepts).
    return DrawPayload(model_id=model.id, prompt=prompt, negative_prompt=options.negative, n=options.n,
                       steps=options.steps, guidance=options.cfg, seeds=seeds, sampler=options.sampler,
                       strength=options.strength, aspect_ratio=options.aspect_ratio)


def again_payload(previous: DrawPayload) -> DrawPayload:
    return previous.model_copy(update={"seeds": None, "variation_strength": 0.0, "variation_seeds": None})


def variations_payload(previous: DrawPayload, seed: int) -> DrawPayload:
    """Images close to one result: its seed's noise, slightly blended with fresh noise per image."""
    n = max(2, previous.n)
    return previous.model_copy(update={
        "n": n,
        "seeds": [seed] * n,
        "variation_strength": VARIATION_STRENGTH,
        "variation_seeds": [secrets.randbelow(2**32) for _ in range(n)],
    })


class DrawsPending(Refusal):
    """The user already has MAX_PENDING_DRAWS drawings queued or running; `first` is False for the repeats of a
    burst, which get no reply of their own."""

    def __init__(self, limit: int, first: bool) -> None:
        super().__init__("draw_too_many", n=limit)
        self.first = first


class DrawService:
    """Every path that makes a drawing (a command, a caption, a button) enqueues through `enqueue`."""

    def __init__(self, store: Storage, default_steps: int | None, max_pending: int = 3) -> None:
        self.store = store
        self.default_steps = default_steps
        self.max_pending = max_pending
        # When each user was last told about the limit: one reply per burst, not one per refused request.
        self._told: dict[int, float] = {}

    async def usable(self, user_id: int, chat_id: int) -> list[Model]:
        return await self.store.models.usable_by(user_id, chat_id)

    async def enqueue(
        self, user_id: int, chat_id: int, payload: DrawPayload, update_id: int | None = None, *, lang: str = "en",
        reply_to: int | None = None,
    ) -> Job:
        """The job, the update's mark (a redelivered /draw queues no second one) and what the result's delivery
        needs (the language, the message to answer) in one transaction."""
        job = await self.store.lifecycle.request_drawing(user_id, chat_id, payload, limit=self.max_pending,
                                                         update_id=update_id, notes=drawing_notes(lang, reply_to))
        if job is None:
            now = time.monotonic()
            first = now - self._told.get(user_id, -BURST_S) >= BURST_S
            if first:
                self._told[user_id] = now
            raise DrawsPending(self.max_pending, first)
        self._told.pop(user_id, None)
        return job

    def recently_told(self, user_id: int) -> bool:
        """Whether the user heard about the pending limit in this burst (other limits then stay quiet)."""
        return time.monotonic() - self._told.get(user_id, -BURST_S) < BURST_S

    async def position(self, job: Job) -> int:
        return await self.store.jobs.queue_position(job.id)
