"""Builds the bot and dispatcher and runs them: polling, the results follower, command menus."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramUnauthorizedError
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    CallbackQuery,
    Message,
    User,
)

from bot.bans import Banned
from bot.config import BotTuning
from bot.delivery import Deliverer, Outbox
from bot.handlers import admin, all_routers, photos
from bot.handlers.errors import on_error
from bot.keyboards import DrawAction
from bot.leadership import Leadership
from bot.local_files import api_server
from bot.metrics import RequestMetrics, UpdateMetrics, serve_endpoints
from bot.middlewares import PerUserRateLimit, RetryAfter, UserContext
from bot.polling import Poller, backoff, describe_problem
from bot.services.drawing import DrawService
from bot.services.photos import AlbumCollector, PhotoIntake
from bot.services.training import TrainingService
from bot.texts import LANGUAGES, Texts
from storage import Settings, Storage, StorageUnavailable
from storage.logs import report_storage_trouble

log = logging.getLogger(__name__)

PRIVATE_COMMANDS = ("start", "photos", "clear", "train", "draw", "models", "settings", "language", "cancel", "help",
                    "forgetme")
GROUP_COMMANDS = ("draw", "share", "unshare", "help")


def create_bot(settings: Settings, tuning: BotTuning | None = None) -> Bot:
    """The Bot for BOT_TOKEN, talking to Telegram's cloud or to the Bot API server the settings name."""
    tuning = tuning or BotTuning()
    server = api_server(settings)
    session = AiohttpSession(api=server) if server else AiohttpSession()
    session.middleware(RetryAfter(tuning.retry_attempts, tuning.max_retry_after_s))
    session.middleware(RequestMetrics())  # inside the retries: every refused attempt counts
    return Bot(token=settings.require_bot_token(), session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))


def create_dispatcher(store: Storage, settings: Settings, tuning: BotTuning | None = None) -> Dispatcher:
    tuning = tuning or BotTuning()
    albums = AlbumCollector(store, tuning.album_wait_s, photos.album_reporter(store, settings))
    drawing = DrawService(store, settings.draw_steps, settings.max_pending_draws)
    dp = Dispatcher(
        store=store,
        settings=settings,
        tuning=tuning,
        intake=PhotoIntake(store, settings.max_photos),
        albums=albums,
        training=TrainingService(store, settings),
        drawing=drawing,
        outbox=Outbox(store, tuning),
    )
    dp.update.outer_middleware(UpdateMetrics())
    dp.update.outer_middleware(UserContext(store))
    dp.update.outer_middleware(Banned(store, settings.admin_ids))
    # Before any router: a flood of texts is dropped here, cheaply, whatever handler would have answered it.
    dp.message.outer_middleware(PerUserRateLimit(tuning.chatter_limit, _is_chatter))
    dp.errors.register(on_error)
    dp.include_routers(admin.create_router(settings.admin_ids), *all_routers(
        photo_middleware=PerUserRateLimit(tuning.photo_limit, lambda m: bool(m.photo or m.document)),
        draw_middleware=PerUserRateLimit(tuning.draw_limit, _is_draw, drawing.recently_told),
        sheet_middleware=PerUserRateLimit(tuning.sheet_limit, _is_command("photos")),
        file_middleware=PerUserRateLimit(tuning.file_limit, _is_png_press),
    ))
    return dp


def _is_command(name: str) -> Callable[[Message | CallbackQuery], bool]:
    pattern = re.compile(rf"^/{name}(@\w+)?(\s|$)")
    return lambda event: isinstance(event, Message) and bool(event.text and pattern.match(event.text))


def _is_chatter(event: Message | CallbackQuery) -> bool:
    """A typed message that is not a /draw (drawings have their own window)."""
    return isinstance(event, Message) and event.text is not None and not _is_draw(event)


def _is_png_press(event: Message | CallbackQuery) -> bool:
    if not isinstance(event, CallbackQuery):
        return False
    try:
        return DrawAction.unpack(event.data or "").action == "png"
    except (TypeError, ValueError):
        return False


def _is_draw(event: Message | CallbackQuery) -> bool:
    """A /draw command, in a text or a caption, or a press of a button under a picture."""
    if isinstance(event, CallbackQuery):
        # The middleware sits on the drawing router: its buttons make drawings, but for the one that sends files.
        try:
            return DrawAction.unpack(event.data or "").action != "png"
        except (TypeError, ValueError):
            return True
    text = event.text or event.caption
    return bool(text and re.match(r"^/draw(@\w+)?(\s|$)", text))


async def set_commands(bot: Bot) -> None:
    for language in LANGUAGES:
        t = Texts(language)
        code = None if language == "en" else language
        await bot.set_my_commands([BotCommand(command=c, description=t(f"cmd_{c}")) for c in PRIVATE_COMMANDS],
                                  scope=BotCommandScopeAllPrivateChats(), language_code=code)
        await bot.set_my_commands([BotCommand(command=c, description=t(f"cmd_{c}")) for c in GROUP_COMMANDS],
                                  scope=BotCommandScopeAllGroupChats(), language_code=code)
        # What an empty chat with the bot shows, and its profile line, in the reader's language.
        await bot.set_my_description(t.plain("bot_description"), language_code=code)
        await bot.set_my_short_description(t.plain("bot_short_description"), language_code=code)


class InvalidToken(Exception):
    """The Bot API server refused BOT_TOKEN: nothing will work until the operator fixes it."""


async def whoami(bot: Bot, tuning: BotTuning) -> User:
    """getMe, tried again through any trouble of the Bot API server; a refused token is InvalidToken at once."""
    failures = 0
    while True:
        try:
            return await bot.me()
        except TelegramUnauthorizedError:
            raise InvalidToken("the Bot API server refused BOT_TOKEN (401 Unauthorized): put the token @BotFather "
                               "gave you into .env as BOT_TOKEN=...") from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            wait = backoff(failures, tuning.poll_retry_s, tuning.poll_max_wait_s)
            log.warning("getMe failed: %s; trying again in %.1f s", describe_problem(exc)[1], wait)
            await asyncio.sleep(wait)


async def run_bot(bot: Bot, dp: Dispatcher, store: Storage, tuning: BotTuning) -> None:
    """Polls and delivers until cancelled — while this bot holds the lead over the database; a second bot on the
    same data waits as a standby until the lead is free."""
    settings: Settings = dp["settings"]
    leadership = Leadership(store, settings.leader_lease_s)
    endpoints = await serve_endpoints(store, settings, leadership)  # liveness answers while getMe is retried too
    try:
        me = await whoami(bot, tuning)
        while True:
            await leadership.acquire()
            await _lead(bot, dp, store, tuning, leadership, me)
    finally:
        await leadership.release()
        await endpoints.stop()


async def _lead(bot: Bot, dp: Dispatcher, store: Storage, tuning: BotTuning, leadership: Leadership,
                me: User) -> None:
    """Serve as the leader; returns when another bot has taken the lead over."""
    with contextlib.suppress(Exception):
        await bot.delete_webhook(drop_pending_updates=False)
    try:
        await set_commands(bot)
        await admin.set_admin_commands(bot, dp["settings"].admin_ids, PRIVATE_COMMANDS)
    except Exception as exc:
        log.warning("could not set the command menus: %s", describe_problem(exc)[1])
    log.info("Kabina is online as @%s", me.username)
    albums: AlbumCollector = dp["albums"]
    albums.bind(bot)
    try:
        await albums.resume()
    except Exception:
        log.exception("could not look for albums still owed a summary")
    settings: Settings = dp["settings"]
    keeper = asyncio.create_task(leadership.keep(), name="lead")
    tasks = [
        asyncio.create_task(Poller(bot, dp, store, tuning).run(), name="polling"),
        asyncio.create_task(Deliverer(bot, store, tuning, leadership).run(), name="deliveries"),
        asyncio.create_task(sweep_forever(store, settings.retention_days, tuning.sweep_every_s), name="retention"),
        keeper,
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is keeper and leadership.lost.is_set():
                return
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if not leadership.lost.is_set():
            await albums.flush()


async def open_storage(settings: Settings) -> Storage:
    """Storage, once it can be opened: a read-only or full DATA_DIR is one line a minute until it is fixed."""
    while True:
        try:
            return await Storage.open(settings.data_dir, database_url=settings.database_url, blob_url=settings.blob_url)
        except StorageUnavailable as exc:
            report_storage_trouble(exc, log)
            await asyncio.sleep(5.0)


async def sweep_forever(store: Storage, retention_days: int, every_s: float) -> None:
    """The retention sweep (storage/retention.py), forever; a failed sweep is logged and tried again next time."""
    while True:
        try:
            report = await store.retention.sweep(retention_days)
            if report:
                log.info("retention sweep: %s", report)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the retention sweep failed")
        await asyncio.sleep(every_s)


async def main(settings: Settings, tuning: BotTuning | None = None) -> None:
    tuning = tuning or BotTuning()
    settings.require_bot_token()  # before waiting on storage: a missing token is the operator's first fix
    store = await open_storage(settings)
    bot = create_bot(settings, tuning)
    try:
        await run_bot(bot, create_dispatcher(store, settings, tuning), store, tuning)
    finally:
        await bot.session.close()
        await store.close()


__all__ = ["InvalidToken", "create_bot", "create_dispatcher", "main", "run_bot", "set_commands", "sweep_forever"]
