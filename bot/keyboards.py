"""Inline keyboards and their callback data."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.texts import Texts
from storage import Model


class DrawAction(CallbackData, prefix="draw"):
    action: str  # "again" | "vary"
    job_id: int
    index: int = 0


class ModelAction(CallbackData, prefix="model"):
    action: str  # "default" | "link" | "export" | "delete" | "confirm" | "keep" | "revoke"
    model_id: int


def draw_keyboard(job_id: int, images: int, t: Texts) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=t("button_again"), callback_data=DrawAction(action="again", job_id=job_id))
    for index in range(images):
        builder.button(text=t("button_vary", k=index + 1),
                       callback_data=DrawAction(action="vary", job_id=job_id, index=index))
    builder.adjust(1, 4)
    return builder.as_markup()


def model_keyboard(model: Model, t: Texts) -> InlineKeyboardMarkup | None:
    builder = InlineKeyboardBuilder()
    if model.status == "ready":
        builder.button(text=t("button_default"), callback_data=ModelAction(action="default", model_id=model.id))
        builder.button(text=t("button_link"), callback_data=ModelAction(action="link", model_id=model.id))
        builder.button(text=t("button_export"), callback_data=ModelAction(action="export", model_id=model.id))
    builder.button(text=t("button_delete"), callback_data=ModelAction(action="delete", model_id=model.id))
    builder.adjust(2, 2)
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
