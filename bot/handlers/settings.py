"""/language and /settings: a user's own language and the defaults /draw uses, each stored per user.

Callback data names a field and a value; the value is checked against the choices offered now (the engine's
published limits, the user's own models) before anything is stored, so forged data changes nothing."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message

from bot.formatting import Markup, join
from bot.keyboards import (
    SETTINGS_FIELDS,
    LanguageChoice,
    SettingsAction,
    language_keyboard,
    settings_choices_keyboard,
    settings_keyboard,
)
from bot.texts import LANGUAGE_NAMES, LANGUAGES, Texts
from storage import EngineInfo, Model, Preferences, Storage
from storage.contract import ASPECT_RATIOS, MAX_IMAGES_PER_DRAW

STEP_CHOICES = (10, 20, 30, 50)
STRENGTH_CHOICES = (0.6, 0.8, 1.0, 1.2)


async def choose_language(message: Message, t: Texts) -> None:
    await message.answer(t("language_choose"), reply_markup=language_keyboard(LANGUAGE_NAMES))


async def language_chosen(query: CallbackQuery, callback_data: LanguageChoice, store: Storage) -> None:
    if callback_data.language not in LANGUAGES:
        await query.answer()
        return
    await store.preferences.update(query.from_user.id, language=callback_data.language)
    await store.users.upsert(query.from_user.id, language=callback_data.language,
                             username=query.from_user.username, first_name=query.from_user.first_name)
    t = Texts(callback_data.language)
    await query.answer(t.plain("language_set"))
    if isinstance(query.message, Message):
        await query.message.edit_text(t("language_set"))


def _choices(field: str, info: EngineInfo, models: list[Model], t: Texts) -> list[tuple[str, str]]:
    """(value, label) for every value the field may take now; "" is the default."""
    auto = [("", t.plain("button_auto"))]
    if field == "model":
        return [(str(m.id), m.name) for m in models]
    if field == "sampler":
        return auto + [(s, s) for s in info.samplers if s != "default"]
    if field == "steps":
        steps = sorted({s for s in (*STEP_CHOICES, info.default_draw_steps) if s <= info.max_draw_steps})
        return auto + [(str(s), str(s)) for s in steps]
    if field == "ar":
        # ":" separates callback data fields: 3:2 travels as 3x2
        return auto + [(a.replace(":", "x"), a) for a in ASPECT_RATIOS if a in info.sizes]
    if field == "n":
        return auto + [(str(n), str(n)) for n in range(1, MAX_IMAGES_PER_DRAW + 1)]
    return auto + [(f"{s:g}", f"{s:g}") for s in STRENGTH_CHOICES]


def _shown(field: str, prefs: Preferences, info: EngineInfo, default_model: Model | None, t: Texts) -> str:
    if field == "model":
        return default_model.name if default_model else t.plain("settings_no_model")
    chosen, engine_default = {
        "sampler": (prefs.sampler, info.default_sampler),
        "steps": (prefs.steps, info.default_draw_steps),
        "ar": (prefs.aspect_ratio, "1:1"),
        "n": (prefs.n, 1),
        "strength": (None if prefs.strength is None else f"{prefs.strength:g}", "1"),
    }[field]
    return str(chosen) if chosen is not None else t.plain("settings_auto", value=str(engine_default))


async def _card(user_id: int, t: Texts, store: Storage) -> Markup:
    prefs, info = await store.preferences.get(user_id), await store.engines.current()
    user = await store.users.get(user_id)
    models = await store.models.usable_by(user_id, user_id)
    default = next((m for m in models if user and m.id == user.default_model_id), None)
    lines = [t("settings_title")]
    lines += [t(f"settings_line_{field}", value=_shown(field, prefs, info, default, t)) for field in SETTINGS_FIELDS]
    return join(lines)


async def show_settings(message: Message, t: Texts, store: Storage) -> None:
    await message.answer(await _card(message.chat.id, t, store), reply_markup=settings_keyboard(t))


async def settings_action(query: CallbackQuery, callback_data: SettingsAction, t: Texts, store: Storage) -> None:
    message = query.message
    if not isinstance(message, Message) or message.chat.id != query.from_user.id:
        await query.answer(t.plain("button_not_yours"), show_alert=True)
        return
    user_id, field = query.from_user.id, callback_data.field
    info = await store.engines.current()
    models = await store.models.usable_by(user_id, user_id)
    if callback_data.action == "open" and field in SETTINGS_FIELDS:
        await query.answer()
        text = join([await _card(user_id, t, store), "", t(f"settings_choose_{field}")])
        await message.edit_text(text, reply_markup=settings_choices_keyboard(field, _choices(field, info, models, t), t))
        return
    if callback_data.action == "set" and field in SETTINGS_FIELDS:
        allowed = {value for value, _ in _choices(field, info, models, t)}
        if callback_data.value not in allowed:
            await query.answer(t.plain("button_unavailable"), show_alert=True)
            return
        await _store_choice(user_id, field, callback_data.value, store)
        await query.answer(t.plain("settings_saved"))
    elif callback_data.action == "reset":
        await store.preferences.reset_drawing(user_id)
        await query.answer(t.plain("settings_reset_done"))
    else:
        await query.answer()
    await message.edit_text(await _card(user_id, t, store), reply_markup=settings_keyboard(t))


async def _store_choice(user_id: int, field: str, value: str, store: Storage) -> None:
    if field == "model":
        await store.users.set_default_model(user_id, int(value))
        return
    converted: object = None
    if value and field == "ar":
        converted = value.replace("x", ":")
    elif value:
        converted = {"steps": int, "n": int, "strength": float}.get(field, str)(value)
    await store.preferences.update(user_id, **{{"ar": "aspect_ratio"}.get(field, field): converted})


def create_router() -> Router:
    # A new router per dispatcher: aiogram attaches a router to one parent only.
    router = Router(name=__name__)
    router.message.register(choose_language, Command("language"))
    router.message.register(show_settings, Command("settings"), F.chat.type == "private")
    router.callback_query.register(language_chosen, LanguageChoice.filter())
    router.callback_query.register(settings_action, SettingsAction.filter())
    return router
