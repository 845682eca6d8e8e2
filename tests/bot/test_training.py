"""/train: validation and allowances, one progress message edited in place, samples on success, /cancel."""

from __future__ import annotations

import pytest

from storage import FailureCode, Storage, load_settings
from tests.fake_telegram import FakeTelegram
from tests.helpers import StandInWorker, User, eventually, photo_bytes, settled, wait_reply


async def _photos(fake: FakeTelegram, user: User, n: int = 3) -> None:
    user.album([photo_bytes(user.id * 10 + i) for i in range(n)])
    await wait_reply(fake, user.id, f"Saved {n}")


@pytest.mark.parametrize("words", ["", "dog!!", "my very fluffy dog", "собака", "x"])
async def test_bad_class_words_get_the_usage_with_examples(
    kabina, fake: FakeTelegram, store: Storage, ann: User, words: str
) -> None:
    await _photos(fake, ann)
    ann.say(f"/train {words}".strip())
    text = await wait_reply(fake, ann.id, "/train teddy bear")
    assert "/train dog" in text
    assert await store.jobs.active_for_owner(ann.id) == []


async def test_too_few_photos_are_refused_with_the_count(kabina, fake: FakeTelegram, ann: User) -> None:
    ann.photo(photo_bytes(1))
    await wait_reply(fake, ann.id, "Saved")
    ann.say("/train dog")
    assert "1 photo" in await wait_reply(fake, ann.id, "at least 3")


async def test_training_reports_queue_position_progress_and_delivers_samples(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    fake.edit_flood = (3, 1.0)  # Telegram's pace: the bot must never be told "too many requests"
    await _photos(fake, ann)
    ann.say("/train dog")
    await wait_reply(fake, ann.id, "Training «dog» on 3 photos")
    progress = await wait_reply(fake, ann.id, "Starting soon")
    job = await worker.claim("train")
    await worker.finish_training(job, steps=20, step_s=0.06)
    ready = await wait_reply(fake, ann.id, "Your model is ready")
    assert "/draw sks dog in Paris" in ready
    (album,) = await fake.wait_call("sendMediaGroup", ann.id)
    assert len(album.images()) == 2 and "sks" in album.params["media"][0]["caption"]
    edits = fake.calls_of("editMessageText", ann.id)
    progress_id = next(c.result["message_id"] for c in fake.calls_of("sendMessage", ann.id)
                       if c.params["text"] == progress)
    assert edits and all(c.params["message_id"] == progress_id for c in edits)
    assert any("step" in c.params["text"] and "/20" in c.params["text"] for c in edits)
    assert "Training finished" in edits[-1].params["text"]
    assert len(edits) < 20  # throttled: far fewer edits than progress reports
    await settled(store, job.id)
    cards = fake.calls_of("sendPhoto", ann.id)
    assert len(cards) == 1, "the report card was not sent"
    card = cards[0]
    assert "Report card" in card.params["caption"] and "0.05" in card.params["caption"]
    assert card.images() == [(store.files.root / "models" / str(job.model_id) / "report_card.png").read_bytes()]
    assert fake.errors() == []  # no 429, no "message is not modified"


async def test_a_report_card_over_the_drift_bar_warns_the_owner(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await _photos(fake, ann)
    ann.say("/train dog")
    job = await worker.claim("train")
    await worker.finish_training(job, steps=2, drift=0.31, drift_warning=True)
    await settled(store, job.id)
    (card,) = fake.calls_of("sendPhoto", ann.id)
    assert "any «dog» you draw may now look like yours" in card.params["caption"] and "0.31" in card.params["caption"]


async def test_a_cancel_that_comes_after_the_model_is_ready_keeps_the_model(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await _photos(fake, ann)
    ann.say("/train dog")
    job = await worker.claim("train")

    async def cancel_while_samples_are_drawn() -> None:
        # The engine has passed its last heartbeat (it is drawing the samples) when the user's /cancel arrives.
        ann.say("/cancel")
        await eventually(lambda: _cancel_asked(store, job.id), what="the cancel to reach the job")

    assert await worker.finish_training(job, steps=2, while_drawing_samples=cancel_while_samples_are_drawn)
    await settled(store, job.id)
    model = await store.models.get(job.model_id)
    assert model.status == "ready" and store.files.inside(model.weights_key).is_file()
    assert [m.id for m in await store.models.list_for_owner(ann.id)] == [job.model_id]
    await wait_reply(fake, ann.id, "Your model is ready")


async def _given_up(store: Storage, job_id: int, lease: float) -> bool:
    assert await store.lifecycle.claim("doomed", kinds=["train"], lease_s=lease) is None
    return (await store.jobs.get(job_id)).status == "failed"


async def _cancel_asked(store: Storage, job_id: int) -> bool:
    return (await store.jobs.get(job_id)).cancel_requested


async def test_a_failed_training_gets_a_friendly_reason(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await _photos(fake, ann)
    ann.say("/train cat")
    job = await worker.claim("train")
    await store.lifecycle.fail(job.id, worker.worker_id, FailureCode.OUT_OF_MEMORY)
    text = await wait_reply(fake, ann.id, "Training failed")
    assert "ran out of memory" in text and "Traceback" not in text
    assert (await store.models.get(job.model_id)).status == "failed"


async def test_a_training_whose_engine_dies_at_every_attempt_is_failed_and_the_owner_may_train_again(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    await _photos(fake, ann)
    ann.say("/train dog")
    await wait_reply(fake, ann.id, "Training «dog»")
    lease = 0.3  # the engine dies at once at every attempt: its lease runs out unrenewed
    for attempt in (1, 2, 3):
        job = await eventually(lambda: store.lifecycle.claim("doomed", kinds=["train"], lease_s=lease), 30,
                               what=f"attempt {attempt}")
        assert job.attempts == attempt
        assert await store.lifecycle.begin_training(job.model_id, ["sks"]) == "sks"
    # Out of attempts: the next claim (any engine's) gives it up instead of handing it out.
    await eventually(lambda: _given_up(store, job.id, lease), 30, what="the training to be given up")
    failed = await wait_reply(fake, ann.id, "Training failed", timeout=30)
    assert "3 times" in failed
    model = await store.models.get(job.model_id)
    assert model.status == "failed" and await store.models.tokens_in_use(ann.id) == set()
    ann.say("/train dog")
    await fake.wait_for(lambda: sum("Training «dog»" in t for t in ann.replies()) == 2, 30,
                        what="a second training to start")
    again = await store.lifecycle.claim("healthy", kinds=["train"])
    assert again is not None and again.model_id != model.id
    assert await store.lifecycle.begin_training(again.model_id, ["sks"]) == "sks"


async def test_one_training_at_a_time_and_cancel_frees_the_slot(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    await _photos(fake, ann)
    ann.say("/train dog")
    await wait_reply(fake, ann.id, "Training «dog»")
    ann.say("/train cat")
    await wait_reply(fake, ann.id, "already have a training")
    ann.say("/cancel")
    await wait_reply(fake, ann.id, "Cancelled 1 job")
    await fake.wait_for(lambda: any("cancelled" in c.params["text"] for c in fake.calls_of("editMessageText", ann.id)),
                        what="the progress message saying cancelled")
    assert await store.jobs.active_for_owner(ann.id) == []
    assert await store.models.list_for_owner(ann.id) == []
    ann.say("/cancel")
    await wait_reply(fake, ann.id, "nothing queued")


@pytest.fixture
def settings(fake: FakeTelegram, data_dir):  # noqa: F811 - only Ann may train here
    return load_settings(bot_token=fake.token, telegram_api_url=fake.base_url, data_dir=data_dir, min_photos=3,
                         max_photos=6, daily_trainings=2, allowed_users="1001")


async def test_only_allowed_users_may_train(kabina, fake: FakeTelegram, cleo: User) -> None:
    await _photos(fake, cleo)
    cleo.say("/train dog")
    await wait_reply(fake, cleo.id, "approved users")
