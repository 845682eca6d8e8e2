"""Unexpected trouble never reaches the user as a traceback, and the bot keeps serving."""

from __future__ import annotations

import logging

from storage import Storage
from tests.fake_telegram import FakeTelegram
from tests.helpers import User, photo_bytes, wait_reply


async def test_a_storage_failure_gets_a_polite_reply_and_the_bot_carries_on(
    kabina, fake: FakeTelegram, store: Storage, ann: User, caplog
) -> None:
    # Disk trouble: where Ann's photo folder should be there is a plain file, so saving a photo fails.
    (store.files.root / "photos").mkdir(exist_ok=True)
    (store.files.root / "photos" / f"u{ann.id}").write_bytes(b"not a folder")
    with caplog.at_level(logging.ERROR):
        ann.photo(photo_bytes(1))
        reply = await wait_reply(fake, ann.id, "Something went wrong")
    assert "Traceback" not in reply and "Error" not in reply
    assert any("failed" in r.getMessage() for r in caplog.records)
    ann.say("/help")
    await wait_reply(fake, ann.id, "Kabina")


async def test_the_token_never_appears_in_logs(kabina, fake: FakeTelegram, ann: User, caplog) -> None:
    from storage.logs import LogLineFilter

    caplog.handler.addFilter(LogLineFilter([fake.token]))
    with caplog.at_level(logging.DEBUG):
        fake.fail_next("sendMessage", retry_after=1)
        ann.say("/help")
        await wait_reply(fake, ann.id, "Kabina")
        logging.getLogger("aiohttp.client").error("GET %s/bot%s/getMe failed", fake.base_url, fake.token)
    assert fake.token not in caplog.text
    assert "[secret]" in caplog.text
