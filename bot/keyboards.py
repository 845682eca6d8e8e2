"""Inline keyboards and their callback data.

Callback data is chosen by the client: a handler trusts nothing in it but as a name of what to look at, and checks
who pressed it and in which chat before touching anything (the checks live beside each handler)."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.formatting import clip
from bot.texts import Texts
from storage import Chat, Model

BUTTON_TITLE_CHARS = 24


class DrawAction(CallbackData, prefix="draw"):
    action: str  # "again" | "vary" | "png" (the pictures as files: Telegram recompresses photos) | "upscale"
    job_id: int
    index: int = 0


class ModelAction(CallbackData, prefix="model"):
    action: str  # "default" | "link" | "export" | "rename" | "delete" | "confirm" | "keep" | "revoke"
    model_id: int


class ShareAction(CallbackData, prefix="share"):
    """Stop sharing a model in one group, pressed in the owner's private chat."""

    model_id: int
    chat_id: int
    place: str = "card"  # "card" (under a /models card) | "list" (under the /unshare list)


class ModelsPage(CallbackData, prefix="models"):
    page: int


class ForgetAction(CallbackData, prefix="forget"):
    action: str  # "confirm" | "keep"


class LanguageChoice(CallbackData, prefix="lang"):
    language: str


class SettingsAction(CallbackData, prefix="set"):
    action: str  # "open" (show a field's choices) | "set" | "home" | "reset"
    field: str = ""  # "model" | "sampler" | "steps" | "ar" | "n" | "strength"
    value: str = ""  # "" (with "set"): back to the default


def draw_keyboard(job_id: int, images: int, t: Texts) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=t.plain("button_again"), callback_data=DrawAction(action="again", job_id=job_id))
    builder.button(text=t.plain("button_png"), callback_data=DrawAction(action="png", job_id=job_id))
    for index in range(images):
        builder.button(text=t.plain("button_vary", k=index + 1),
                       callback_data=DrawAction(action="vary", job_id=job_id, index=index))
    for index in range(images):
        label = t.plain("button_upscale_one") if images == 1 else t.plain("button_upscale", k=index + 1)
        builder.button(text=label, callback_data=DrawAction(action="upscale", job_id=job_id, index=index))
    builder.adjust(2, images, images)
    return builder.as_markup()


def model_keyboard(model: Model, t: Texts, groups: list[Chat] | None = None, links: int = 0) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    if model.status == "ready":
        builder.button(text=t("button_default"), callback_data=ModelAction(action="default", model_id=model.id))
        builder.button(text=t("button_link"), callback_data=ModelAction(action="link", model_id=model.id))
        builder.button(text=t("button_export"), callback_data=ModelAction(action="export", model_id=model.id))
        builder.button(text=t("button_rename"), callback_data=ModelAction(action="rename", model_id=model.id))
    builder.button(text=t("button_delete"), callback_data=ModelAction(action="delete", model_id=model.id))
    sizes = [2, 2, 1] if model.status == "ready" else [1]
    for chat in groups or []:
        builder.button(text=t.plain("button_stop_group", title=clip(chat.title or "?", BUTTON_TITLE_CHARS)),
                       callback_data=ShareAction(model_id=model.id, chat_id=chat.id))
        sizes.append(1)
    if links:
        builder.button(text=t("button_revoke"), callback_data=ModelAction(action="revoke", model_id=model.id))
        sizes.append(1)
    builder.adjust(*sizes)
    return builder.as_markup()


def confirm_delete_keyboard(model_id: int, t: Texts) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=t("button_confirm_delete"), callback_data=ModelAction(action="confirm", model_id=model_id))
    builder.button(text=t("button_keep"), callback_data=ModelAction(action="keep", model_id=model_id))
    return builder.as_markup()


def revoke_keyboard(model_id: int, t: Texts) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=t("button_revoke"), callback_data=ModelAction(action="revoke", model_id=model_id))
    return builder.as_markup()


def stop_shares_keyboard(shares: list[tuple[Model, Chat]], t: Texts) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for model, chat in shares:
        builder.button(text=t.plain("button_stop_model_group", name=clip(model.name, BUTTON_TITLE_CHARS),
                              title=clip(chat.title or "?", BUTTON_TITLE_CHARS)),
                       callback_data=ShareAction(model_id=model.id, chat_id=chat.id, place="list"))
    builder.adjust(1)
    return builder.as_markup()


def pages_keyboard(page: int, pages: int, t: Texts) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    if page > 0:
        builder.button(text=t("button_page_newer"), callback_data=ModelsPage(page=page - 1))
    if page + 1 < pages:
        builder.button(text=t("button_page_older"), callback_data=ModelsPage(page=page + 1))
    return builder.as_markup()


def forget_keyboard(t: Texts) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=t("button_forget_confirm"), callback_data=ForgetAction(action="confirm"))
    builder.button(text=t("button_keep"), callback_data=ForgetAction(action="keep"))
    return builder.as_markup()


def language_keyboard(names: dict[str, str]) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for code, name in names.items():
        builder.button(text=name, callback_data=LanguageChoice(language=code))
    return builder.as_markup()


SETTINGS_FIELDS = ("model", "sampler", "steps", "ar", "n", "strength")


def settings_keyboard(t: Texts) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for field in SETTINGS_FIELDS:
        builder.button(text=t.plain(f"button_settings_{field}"), callback_data=SettingsAction(action="open", field=field))
    builder.button(text=t.plain("button_settings_reset"), callback_data=SettingsAction(action="reset"))
    builder.adjust(2, 2, 2, 1)
    return builder.as_markup()


def settings_choices_keyboard(field: str, choices: list[tuple[str, str]], t: Texts) -> InlineKeyboardMarkup:
    """`choices`: (value, label); "" is the default ("auto"), offered first."""
    builder = InlineKeyboardBuilder()
    for value, label in choices:
        builder.button(text=clip(label, BUTTON_TITLE_CHARS),
                       callback_data=SettingsAction(action="set", field=field, value=value))
    builder.button(text=t.plain("button_back"), callback_data=SettingsAction(action="home"))
    builder.adjust(*([3] * (len(choices) // 3)), len(choices) % 3 or 3, 1)
    return builder.as_markup()
