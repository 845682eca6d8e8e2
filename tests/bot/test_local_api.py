"""A local Bot API server (TELEGRAM_API_LOCAL): files are read from its disk through the TELEGRAM_API_FILES mapping,
the byte cap still holds, and no path the server names outside its own folder is ever read."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.services.images import DOWNLOAD_LIMIT
from storage import ConfigError, Settings, Storage, load_settings
from tests.fake_telegram import FakeTelegram
from tests.helpers import User, photo_bytes, wait_reply

SERVER_DIR = "/var/lib/telegram-bot-api"  # the folder as the server names it: not a folder on this machine


@pytest.fixture
def mounted(tmp_path: Path) -> Path:
    """Where the bot sees the local server's working folder."""
    return tmp_path / "mounted" / "telegram-bot-api"


@pytest.fixture
def settings(fake: FakeTelegram, data_dir: Path, mounted: Path) -> Settings:
    files = fake.serve_locally(mounted, SERVER_DIR)
    return load_settings(
        bot_token=fake.token, telegram_api_url=fake.base_url, telegram_api_local=True, telegram_api_files=files,
        data_dir=data_dir, min_photos=3, max_photos=6,
    )


async def test_a_photo_from_a_local_server_is_read_from_its_disk_and_saved(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    original = photo_bytes(1, size=(600, 500), fmt="PNG")
    fake.send_document(ann.data, original, "me.png", "image/png")
    await wait_reply(fake, ann.id, "Saved")
    (photo,) = await store.photos.list(ann.id)
    assert await store.blobs.get(photo.blob_key) == original
    assert fake.calls_of("download") == []  # nothing came over HTTP
    assert fake.calls_of("getFile")[0].result["file_path"].startswith(f"{SERVER_DIR}/")


async def test_a_local_file_over_the_cap_gets_the_size_reply_whatever_its_declared_size(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    # A local server has no 20 MB limit of its own, and the size it declares is only a claim.
    stored = fake.register_file(photo_bytes(2, fmt="PNG"), size=300_000)
    os.truncate(fake.local_file(stored), DOWNLOAD_LIMIT + 1)  # a real picture, then zeros past the cap
    ann.photo(b"", stored=stored)
    text = await fake.wait_for(lambda: next(iter(ann.replies()), None), what="a reply", timeout=20)
    assert "larger than 20 MB" in text
    assert await store.photos.count(ann.id) == 0


@pytest.mark.parametrize("forgery", ["absolute", "dotdot", "symlink"])
async def test_a_path_outside_the_local_servers_folder_is_refused_and_never_read(
    kabina, fake: FakeTelegram, store: Storage, ann: User, mounted: Path, tmp_path: Path, forgery: str,
) -> None:
    # The forged target is a good photo: had the bot read it, it would have been saved.
    secret = tmp_path / "secret.png"
    secret.write_bytes(photo_bytes(3, fmt="PNG"))
    stored = fake.register_file(b"never served")
    if forgery == "absolute":
        stored.forged_path = str(secret)
    elif forgery == "dotdot":
        # <mounted>/<token>/../../../secret.png is tmp_path/secret.png
        stored.forged_path = f"{SERVER_DIR}/{fake.token}/../../../secret.png"
    else:
        link = fake.local_file(stored)
        link.unlink()
        link.symlink_to(secret)
    fake.send_document(ann.data, b"", "x.png", "image/png", stored=stored)
    text = await wait_reply(fake, ann.id, "could not fetch that file", timeout=20)
    assert "Traceback" not in text
    assert await store.photos.count(ann.id) == 0


async def test_the_token_never_appears_in_the_logs_though_the_local_servers_paths_hold_it(
    kabina, fake: FakeTelegram, store: Storage, ann: User, caplog
) -> None:
    with caplog.at_level(logging.DEBUG):
        fake.send_document(ann.data, photo_bytes(4, fmt="PNG"), "ok.png", "image/png")
        await wait_reply(fake, ann.id, "Saved")
        forged = fake.register_file(b"x")
        forged.forged_path = f"/etc/{fake.token}/passwd"
        fake.send_document(ann.data, b"", "x.png", "image/png", stored=forged)
        await wait_reply(fake, ann.id, "could not fetch that file")
    assert any("outside TELEGRAM_API_FILES" in r.getMessage() for r in caplog.records)
    assert fake.token not in caplog.text
    assert fake.token.partition(":")[2] not in caplog.text


def test_local_mode_settings_are_checked_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs TELEGRAM_API_URL"):
        load_settings(telegram_api_local=True, telegram_api_files="/a:/b", data_dir=tmp_path)
    for wrong in ("", "/var/lib/telegram-bot-api", "relative:/srv/tg", "/srv/a:/srv/../etc"):
        with pytest.raises(ConfigError, match="TELEGRAM_API_FILES=SERVER_DIR:BOT_DIR"):
            load_settings(telegram_api_url="http://tg:8081", telegram_api_local=True, telegram_api_files=wrong,
                          data_dir=tmp_path)
    ok = load_settings(telegram_api_url="http://tg:8081", telegram_api_local=True, data_dir=tmp_path,
                       telegram_api_files="/var/lib/telegram-bot-api:/srv/tg")
    assert [str(p) for p in ok.local_api_files()] == ["/var/lib/telegram-bot-api", "/srv/tg"]


def test_the_bot_refuses_to_start_on_a_half_configured_local_server_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "BOT_TOKEN": "123:secret-token-value", "TELEGRAM_API_URL": "http://127.0.0.1:9",
           "TELEGRAM_API_LOCAL": "true", "DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "TELEGRAM_API_FILES=SERVER_DIR:BOT_DIR" in done.stderr
    assert "Traceback" not in done.stderr and "secret-token-value" not in done.stderr
