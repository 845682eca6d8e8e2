"""Admin commands for ADMIN_IDS: /stats, /ban, /unban and /resetlimit; everyone else is refused politely."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import BotCommand, BotCommandScopeChat, Message

from bot.services.training import TrainingService
from bot.texts import Texts
from storage import Settings, Stats, Storage

log = logging.getLogger(__name__)

ADMIN_COMMANDS = ("stats", "ban", "unban", "resetlimit")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _megabytes(n: int | None) -> str:
    return "—" if n is None else f"{n / 1e6:,.0f} MB"


def render_stats(stats: Stats, t: Texts) -> str:
    """The /stats reply: one line per figure, the queue and the engines one line each."""
    queues = "\n".join(t.plain("stats_queue_line", kind=q.kind, queued=q.queued, running=q.running,
                               wait=_duration(q.oldest_wait_s)) for q in stats.queues) or t.plain("stats_none")
    failures = ", ".join(f"{code} × {n}" for code, n in stats.failures_today.items()) or t.plain("stats_none")
    engines = "\n".join(t.plain("stats_engine_line", worker=e.worker_id, family=e.family, title=e.title,
                                seen=_duration(e.alive_s_ago),
                                busy=f"job {e.busy_with}" if e.busy_with else t.plain("stats_idle"))
                        for e in stats.engines) or t.plain("stats_no_engine")
    return str(t("stats", users=stats.users, queues=queues, trainings=stats.trainings_today,
                 draws=stats.draws_today, failures=failures, engines=engines, backlog=stats.outbox_backlog,
                 banned=stats.banned, database=_megabytes(stats.database_bytes),
                 free=_megabytes(stats.disk_free_bytes), total=_megabytes(stats.disk_total_bytes)))


async def refuse(message: Message, t: Texts) -> None:
    await message.answer(t("admin_only"))


async def stats(message: Message, store: Storage, t: Texts) -> None:
    await message.answer(render_stats(await store.admin.stats(), t))


async def _target(message: Message, command: CommandObject, store: Storage, t: Texts) -> int | None:
    """The user an admin command names (an id or a known @username); says what is wrong otherwise."""
    if not command.args:
        await message.answer(t("admin_usage", command=command.command))
        return None
    user_id = await store.admin.find_user(command.args.split()[0])
    if user_id is None:
        await message.answer(t("admin_unknown_user", who=command.args.split()[0]))
    return user_id


async def ban(message: Message, command: CommandObject, store: Storage, t: Texts, settings: Settings,
              training: TrainingService) -> None:
    user_id = await _target(message, command, store, t)
    if user_id is None:
        return
    if user_id in settings.admin_ids:
        await message.answer(t("admin_ban_admin"))
        return
    new = await store.admin.ban(user_id, message.from_user.id if message.from_user else 0)
    # Their queued work goes too: a banned user's jobs would only hold the GPU for someone who is gone.
    cancelled = await training.cancel_all(user_id)
    await message.answer(t("admin_banned" if new else "admin_already_banned", user=user_id, jobs=len(cancelled)))


async def unban(message: Message, command: CommandObject, store: Storage, t: Texts) -> None:
    user_id = await _target(message, command, store, t)
    if user_id is not None:
        removed = await store.admin.unban(user_id)
        await message.answer(t("admin_unbanned" if removed else "admin_not_banned", user=user_id))


async def reset_limit(message: Message, command: CommandObject, store: Storage, t: Texts, settings: Settings) -> None:
    user_id = await _target(message, command, store, t)
    if user_id is not None:
        await store.admin.reset_allowance(user_id)
        await message.answer(t("admin_limit_reset", user=user_id, cap=settings.daily_trainings))


def create_router(admin_ids: frozenset[int]) -> Router:
    router = Router(name=__name__)
    is_admin = F.from_user.id.in_(admin_ids)
    private = F.chat.type == "private"
    router.message.register(stats, Command("stats"), private, is_admin)
    router.message.register(ban, Command("ban"), private, is_admin)
    router.message.register(unban, Command("unban"), private, is_admin)
    router.message.register(reset_limit, Command("resetlimit"), private, is_admin)
    router.message.register(refuse, Command(*ADMIN_COMMANDS), private)
    return router


async def set_admin_commands(bot: Bot, admin_ids: frozenset[int], private_commands: Sequence[str]) -> None:
    """Each admin's menu in their private chat: everyone's commands and the admin ones."""
    t = Texts()
    commands = [BotCommand(command=c, description=t.plain(f"cmd_{c}")) for c in (*private_commands, *ADMIN_COMMANDS)]
    for admin_id in sorted(admin_ids):
        try:
            await bot.set_my_commands(commands, scope=BotCommandScopeChat(chat_id=admin_id))
        except Exception as exc:  # an admin who never opened a chat with the bot: no menu, commands still work
            log.info("no admin command menu for %s: %s", admin_id, exc)
