"""A full disk under DATA_DIR: one polite "try again later" per update (never again on a restart), one clear line a
minute for the operator, nothing half-saved, and the bot back to normal by itself once there is room again."""

from __future__ import annotations

import asyncio
import signal

import pytest

from storage import Settings
from tests.fake_telegram import FakeTelegram
from tests.helpers import BotProcess, TightDisk, User, photo_bytes, started, wait_reply

pytestmark = pytest.mark.skipif(not TightDisk.possible(), reason="needs root and mount to make a real full filesystem")

CANT_SAVE = "can't save that right now"
OPERATOR_LINE = "cannot save: no space left"


async def test_a_full_disk_gets_one_polite_reply_per_update_and_the_bot_recovers_by_itself(
    fake: FakeTelegram, settings: Settings, ann: User
) -> None:
    with TightDisk(settings.data_dir, size=8 * 1024 * 1024) as disk:
        bot = BotProcess(settings, name="full-disk")
        try:
            await started(fake, bot, 0)
            ann.say("/help")
            await wait_reply(fake, ann.id, "Kabina", timeout=20)
            disk.fill()
            ann.photo(photo_bytes(1))  # neither photo fits on the disk any more
            ann.photo(photo_bytes(2))
            await fake.wait_for(lambda: sum(CANT_SAVE in t for t in ann.replies()) >= 2, 30,
                                what="a polite reply to each photo")
            await fake.wait_idle(quiet=1.0, timeout=20)
            assert bot.alive(), bot.output()[-2000:]  # it keeps polling
            assert bot.output().count(OPERATOR_LINE) == 1  # one clear line, not one per update or per retry
            bot.kill()
            bot.start()  # a supervisor restarts it while the disk is still full
            await fake.wait_for(lambda: bot.output().count(OPERATOR_LINE) == 2, 30, what="the restart to notice")
            disk.free()
            await fake.wait_call("setMyCommands", count=8, timeout=30)  # back by itself
            ann.photo(photo_bytes(3))
            await wait_reply(fake, ann.id, "Saved 1", timeout=20)
            await fake.wait_idle(quiet=1.0, timeout=20)
            assert sum(CANT_SAVE in t for t in ann.replies()) == 2  # never the same reply again after a restart
            assert not any("Something went wrong" in t for t in ann.replies())
            assert not list(settings.data_dir.rglob(".partial-*"))  # nothing half-written
            assert len(list(settings.data_dir.rglob("*.img"))) == 1
        finally:
            bot.kill()
        assert "Traceback" not in bot.output()


async def test_a_read_only_data_dir_at_start_is_one_clear_line_and_the_bot_comes_up_once_it_is_writable(
    fake: FakeTelegram, settings: Settings, ann: User
) -> None:
    with TightDisk(settings.data_dir) as disk:
        bot = BotProcess(settings, name="read-only")
        try:
            await started(fake, bot, 0)
            bot.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            assert await asyncio.to_thread(bot.exit_code, 30) == 0
            disk.read_only()  # e.g. the filesystem was remounted read-only after an error
            bot.start()
            await fake.wait_for(lambda: "is read-only" in bot.output(), 30, what="the read-only line")
            assert bot.alive(), bot.output()[-2000:]  # waiting, not crashing in a restart loop
            disk.writable()
            await fake.wait_call("setMyCommands", count=8, timeout=30)
            ann.say("/help")
            await wait_reply(fake, ann.id, "Kabina", timeout=20)
            assert bot.output().count("cannot save") == 1
        finally:
            bot.kill()
        assert "Traceback" not in bot.output()
