"""Unexpected trouble never reaches the user as a traceback, and the bot keeps serving."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

from storage import Settings, Storage
from tests.fake_telegram import PROXY_ERROR_PAGE, FakeTelegram
from tests.helpers import (
    BotProcess,
    StandInWorker,
    User,
    make_ready_model,
    photo_bytes,
    settled,
    started,
    wait_reply,
)


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


async def test_the_token_never_appears_in_the_bot_process_output_even_when_error_pages_echo_it(
    fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker, bot_process: BotProcess
) -> None:
    # The real `python -m bot`: its own logging set-up, hooks and redaction, not one installed by the test.
    await make_ready_model(store, ann.id)
    fake.answer_next("getMe", 502, PROXY_ERROR_PAGE)  # an nginx page that prints the path — and the token in it
    fake.answer_next("getUpdates", 502, PROXY_ERROR_PAGE, times=3)
    fake.answer_next("getUpdates", 200, PROXY_ERROR_PAGE)  # a proxy that even says 200
    fake.fail_next_with("sendMediaGroup", 500, "Internal Server Error while handling {path}")
    fake.fail_next_with("sendMediaGroup", 500, "Internal Server Error while handling {quoted_path}")
    await started(fake, bot_process, 0)
    ann.say("/draw sks dog --n 2")
    job = await worker.claim("draw", timeout=60)  # the bot backs off 1, 2, 4, 8 s through the bad answers
    await worker.finish_draw(job)
    await settled(store, job.id, timeout=30)
    ann.say("/help")
    await wait_reply(fake, ann.id, "Kabina", timeout=20)
    bot_process.kill()
    output = bot_process.output()
    assert fake.answers_left() == 0 and len(fake.calls_of("sendMediaGroup", ann.id)) == 1
    assert "[secret]" in output  # the token did reach the log lines, and was replaced there
    token = fake.token
    for form in (token, quote(token, safe=""), token.split(":", 1)[1]):  # as is, URL-quoted, its secret half
        assert form not in output
    assert "Traceback" not in output


async def test_a_refused_token_at_start_is_one_clear_line_and_a_non_zero_exit(
    fake: FakeTelegram, settings: Settings
) -> None:
    revoked = "123456:this-token-was-revoked"
    process = BotProcess(settings, extra_env={"BOT_TOKEN": revoked}, name="revoked")
    process.start()
    try:
        code = await asyncio.to_thread(process.exit_code, 60)
    finally:
        process.kill()
    output = process.output()
    lines = [line for line in output.splitlines() if "BOT_TOKEN" in line]
    assert code != 0, output
    assert len(lines) == 1 and "401" in lines[0], output
    assert "Traceback" not in output and revoked not in output and "was-revoked" not in output
