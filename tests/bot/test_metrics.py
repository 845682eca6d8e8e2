"""The bot's /metrics and /healthz: figures that move when users are served, and a liveness answer that says
whether this bot polls or waits as a standby."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import BotTuning
from storage import Settings, Storage, load_settings
from tests.fake_telegram import FakeTelegram
from tests.helpers import RunningBot, User, eventually, make_ready_model, wait_reply
from tests.metrics_scrape import free_port, healthz, scrape


@pytest.fixture
def settings(fake: FakeTelegram, data_dir: Path) -> Settings:
    return load_settings(
        bot_token=fake.token, telegram_api_url=fake.base_url, data_dir=data_dir, min_photos=3, max_photos=6,
        draw_steps=4, metrics_port=free_port(),
    )


async def test_metrics_count_updates_answers_refusals_and_the_queue(
    kabina, fake: FakeTelegram, store: Storage, settings: Settings, ann: User
) -> None:
    port = settings.metrics_port
    before = await scrape(port)
    ann.say("/help")
    await wait_reply(fake, ann.id, "Kabina")
    fake.fail_next("sendMessage", retry_after=1)  # one 429, waited out by the retry
    fake.fail_next_with("sendMessage", 502, "Bad Gateway")  # and one 5xx
    ann.say("/help")
    await fake.wait_for(lambda: sum("Kabina" in t for t in ann.replies()) >= 2 or fake.answers_left() == 0,
                        what="the second /help to be tried")
    await make_ready_model(store, ann.id)
    ann.say("/draw sks dog in Paris")
    await eventually(lambda: store.jobs.active_for_owner(ann.id, "draw"), what="the drawing to be queued")

    after = await scrape(port)

    def moved(name: str, **labels: str) -> float:
        return after.get_value(name, **labels) - before.get_value(name, **labels)

    assert moved("kabina_bot_updates_total", type="message") == 3
    assert moved("kabina_bot_first_answer_seconds_count") == 3  # one per update, however many tries it took
    assert moved("kabina_telegram_errors_total", status="429") == 1
    assert moved("kabina_telegram_errors_total", status="5xx") == 1
    assert after.get_value("kabina_queue_depth", kind="draw") == 1
    assert after.get_value("kabina_queue_depth", kind="train") == 0
    assert after.get_value("kabina_queue_oldest_wait_seconds", kind="draw") >= 0
    assert after.get_value("kabina_users") == 1 and after.get_value("kabina_bot_leader") == 1
    assert after.get_value("kabina_data_disk_free_bytes") > 0


async def test_liveness_says_the_leader_polls_and_a_second_bot_waits(
    kabina, fake: FakeTelegram, settings: Settings, tuning: BotTuning
) -> None:
    status, state = await healthz(settings.metrics_port)
    assert status == 200 and state == {"ok": True, "process": "bot", "role": "leader"}
    second = RunningBot(settings.model_copy(update={"metrics_port": free_port()}), tuning)
    await second.start()
    try:
        status, state = await eventually(lambda: _answered(healthz(second.settings.metrics_port)), 20,
                                         what="the standby's liveness endpoint")
        assert status == 200 and state["role"] == "standby"
        assert (await healthz(settings.metrics_port))[1]["role"] == "leader"
    finally:
        await second.stop()


async def _answered(request):
    try:
        return await request
    except OSError:
        return None
