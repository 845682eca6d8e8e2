"""The bot's routers, one per subject, in the order the dispatcher tries them."""

from __future__ import annotations

from aiogram import Router

from bot.handlers import (
    drawing,
    fallback,
    groups,
    models,
    photos,
    pictures,
    rename,
    settings,
    start,
    training,
)


def all_routers(photo_middleware: object = None, draw_middleware: object = None,
                sheet_middleware: object = None, file_middleware: object = None) -> list[Router]:
    photo_router, draw_router, picture_router = photos.create_router(), drawing.create_router(), pictures.create_router()
    for middleware in (photo_middleware, sheet_middleware):
        if middleware is not None:
            photo_router.message.middleware(middleware)  # type: ignore[arg-type]
    if draw_middleware is not None:
        # Commands, captions and the buttons under pictures all make drawings: one window for them all.
        draw_router.message.middleware(draw_middleware)  # type: ignore[arg-type]
        draw_router.callback_query.middleware(draw_middleware)  # type: ignore[arg-type]
        picture_router.message.middleware(draw_middleware)  # type: ignore[arg-type]
        picture_router.callback_query.middleware(draw_middleware)  # type: ignore[arg-type]
    if file_middleware is not None:
        draw_router.callback_query.middleware(file_middleware)  # type: ignore[arg-type]
    # fallback last: it answers whatever no other router took.
    return [start.create_router(), picture_router, photo_router, training.create_router(), draw_router, models.create_router(),
            groups.create_router(), settings.create_router(), rename.create_router(), fallback.create_router()]
