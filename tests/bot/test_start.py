"""First contact: /start and /help in both languages, the command menus, and a bot that starts without torch."""

from __future__ import annotations

import subprocess
import sys

from tests.fake_telegram import FakeTelegram
from tests.helpers import User, wait_reply


async def test_start_explains_the_steps_in_english(kabina, fake: FakeTelegram, ann: User) -> None:
    ann.say("/start")
    text = await wait_reply(fake, ann.id, "Kabina")
    assert "/train dog" in text and "/draw in Paris" in text
    # the options come from the running engine's model: SD1.x takes a negative prompt and CFG
    assert "--neg" in text and "--cfg" in text and "Stable Diffusion 1.x" in text


async def test_help_is_russian_for_a_russian_client(kabina, fake: FakeTelegram, boris: User) -> None:
    boris.say("/help")
    text = await wait_reply(fake, boris.id, "Кабина")
    assert "/train dog" in text


async def test_command_menus_are_set_for_private_chats_and_groups(kabina, fake: FakeTelegram) -> None:
    calls = await fake.wait_call("setMyCommands", count=4)
    scopes = {(c.params["scope"]["type"], c.params.get("language_code")) for c in calls}
    assert scopes == {("all_private_chats", None), ("all_group_chats", None),
                      ("all_private_chats", "ru"), ("all_group_chats", "ru")}
    group = next(c for c in calls if c.params["scope"]["type"] == "all_group_chats")
    private = next(c for c in calls if c.params["scope"]["type"] == "all_private_chats")
    assert {c["command"] for c in group.params["commands"]} < {c["command"] for c in private.params["commands"]} | {
        "share", "unshare"}
    assert len(group.params["commands"]) < len(private.params["commands"])


async def test_unknown_text_gets_a_pointer_to_help(kabina, fake: FakeTelegram, ann: User) -> None:
    ann.say("hello there")
    assert "/help" in await wait_reply(fake, ann.id, "/help")


def test_the_bot_starts_without_importing_torch() -> None:
    code = "import sys, bot.app, bot.__main__; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_missing_token_is_one_clear_line(tmp_path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path), "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "bot"], capture_output=True, text=True, timeout=60, env=env,
                            cwd=tmp_path)
    assert result.returncode == 2
    assert "BOT_TOKEN" in result.stderr and "Traceback" not in result.stderr
