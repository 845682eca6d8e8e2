"""Deletion that deletes: a deleted model, a cleared photo set and a forgotten user leave no file and no row behind
(the file listings are of the real DATA_DIR), and a model deleted while it trains never comes back."""

from __future__ import annotations

from pathlib import Path

from storage import Settings, Storage
from tests.fake_telegram import BOT_USERNAME, FakeTelegram
from tests.helpers import (
    StandInWorker,
    User,
    eventually,
    files_holding,
    files_under,
    photo_bytes,
    settled,
    wait_reply,
)

GROUP = FakeTelegram.group_chat(-100888, "Family")


def _photo_set(user: User, n: int = 3) -> list[bytes]:
    return [photo_bytes(user.id * 10 + i) for i in range(n)]


async def _trained_model(fake: FakeTelegram, store: Storage, user: User, worker: StandInWorker) -> int:
    """The user's photos, a training through the bot (with a checkpoint half way), and the model ready."""
    user.album(_photo_set(user))
    await wait_reply(fake, user.id, "Saved 3")
    user.say("/train dog")
    job = await worker.claim("train")
    assert await worker.finish_training(job, steps=4)
    await settled(store, job.id)
    return int(job.model_id)


async def _draw(fake: FakeTelegram, store: Storage, user: User, worker: StandInWorker, text: str,
                chat: dict | None = None) -> int:
    user.say(text, chat=chat)
    job = await worker.claim("draw")
    await worker.finish_draw(job)
    await settled(store, job.id)
    return job.id


def _of_models_and_jobs(data_dir: Path) -> list[Path]:
    """Weights, checkpoints and optimizer state, samples, report cards, photo copies and drawn pictures."""
    return [p for p in files_under(data_dir) if p.relative_to(data_dir).parts[0] in {"models", "jobs"}]


async def _press(fake: FakeTelegram, user: User, contains: str, button: str) -> None:
    call = next(c for c in reversed(fake.calls_of("sendMessage", user.id)) if contains in c.params["text"])
    message = fake.messages[(user.id, call.result["message_id"])]
    markup = message.reply_markup or call.params["reply_markup"]
    data = next(b["callback_data"] for row in markup["inline_keyboard"] for b in row if button in b["text"])
    fake.press_button(user.data, message, data)


async def _delete_by_buttons(fake: FakeTelegram, user: User) -> None:
    user.say("/models")
    await wait_reply(fake, user.id, "<code>sks</code>")
    await _press(fake, user, "<code>sks</code>", "Delete")
    await fake.wait_call("editMessageReplyMarkup", user.id)
    await _press(fake, user, "<code>sks</code>", "Yes, delete")


async def test_deleting_a_model_removes_its_weights_checkpoints_samples_and_every_picture_drawn_with_it(
    kabina, fake: FakeTelegram, store: Storage, settings: Settings, ann: User, cleo: User, worker: StandInWorker
) -> None:
    model_id = await _trained_model(fake, store, ann, worker)
    await _draw(fake, store, ann, worker, "/draw sks dog in Paris --n 2")
    ann.say(f"/share@{BOT_USERNAME}", chat=GROUP)
    await wait_reply(fake, GROUP["id"], "now shared")
    await _draw(fake, store, cleo, worker, f"/draw@{BOT_USERNAME} sks dog at the lake", chat=GROUP)
    before = _of_models_and_jobs(settings.data_dir)
    assert {p.suffix for p in before} >= {".safetensors", ".png"}, before
    # The training's checkpoint (its LoRA and optimizer state) serves only to resume it: the sweep removes it.
    await store.retention.sweep(settings.retention_days)
    assert [p for p in _of_models_and_jobs(settings.data_dir) if p.suffix == ".pt"] == []
    await _delete_by_buttons(fake, ann)
    await fake.wait_for(lambda: any("deleted" in (c.params.get("text") or "")
                                    for c in fake.calls_of("editMessageText", ann.id)), what="deleted")
    await store.retention.sweep(settings.retention_days)
    assert _of_models_and_jobs(settings.data_dir) == []
    assert (await store.models.get(model_id)).status == "deleted"


async def test_a_model_deleted_while_it_draws_its_samples_stays_deleted(
    kabina, fake: FakeTelegram, store: Storage, settings: Settings, ann: User, worker: StandInWorker
) -> None:
    ann.album(_photo_set(ann))
    await wait_reply(fake, ann.id, "Saved 3")
    ann.say("/train dog")
    job = await worker.claim("train")

    async def delete_meanwhile() -> None:
        await _delete_by_buttons(fake, ann)
        await eventually(lambda: _status(store, job.model_id, "deleted"), what="the model to be deleted")

    assert not await worker.finish_training(job, steps=3, while_drawing_samples=delete_meanwhile)
    await settled(store, job.id)
    assert (await store.models.get(job.model_id)).status == "deleted"
    assert await store.models.list_for_owner(ann.id) == []
    assert not any("ready" in t for t in ann.replies())
    assert fake.calls_of("sendMediaGroup", ann.id) == [] and fake.calls_of("sendPhoto", ann.id) == []
    assert await eventually(lambda: _of_models_and_jobs(settings.data_dir) == [], timeout=5,
                            what="the files the engine wrote after the delete to go") is True


async def _status(store: Storage, model_id: int | None, status: str) -> bool:
    model = await store.models.get(int(model_id or 0))
    return model is not None and model.status == status


async def test_clear_removes_the_photo_files_including_the_copies_a_finished_model_held(
    kabina, fake: FakeTelegram, store: Storage, settings: Settings, ann: User, worker: StandInWorker
) -> None:
    await _trained_model(fake, store, ann, worker)
    assert files_holding(settings.data_dir, _photo_set(ann))
    ann.say("/clear")
    await wait_reply(fake, ann.id, "Removed 3")
    await store.retention.sweep(settings.retention_days)
    assert files_holding(settings.data_dir, _photo_set(ann)) == []
    assert await store.photos.count(ann.id) == 0


async def test_forgetme_deletes_everything_of_the_user_and_nothing_of_anyone_else(
    kabina, fake: FakeTelegram, store: Storage, settings: Settings, ann: User, cleo: User, worker: StandInWorker,
) -> None:
    boris = User(fake, fake.user(1004, "Dan", "en", "dan"))
    boris_model = await _trained_model(fake, store, boris, worker)
    boris_draw = await _draw(fake, store, boris, worker, "/draw sks dog in Moscow")
    await _trained_model(fake, store, ann, worker)
    ann.say(f"/share@{BOT_USERNAME}", chat=GROUP)
    await wait_reply(fake, GROUP["id"], "now shared")
    await _draw(fake, store, ann, worker, "/draw sks dog at home, door code qx4471")
    await _draw(fake, store, cleo, worker, f"/draw@{BOT_USERNAME} sks dog at the lake", chat=GROUP)
    ann.album([photo_bytes(4242), photo_bytes(4243)])  # a new set, not trained yet
    await wait_reply(fake, ann.id, "Saved 2")
    ann.say("/forgetme")
    await wait_reply(fake, ann.id, "cannot be undone")
    await _press(fake, ann, "cannot be undone", "Delete everything")
    await fake.wait_for(lambda: any("start from scratch" in (c.params.get("text") or "")
                                    for c in fake.calls_of("editMessageText", ann.id)), what="forgotten")

    mine = [*_photo_set(ann), photo_bytes(4242), photo_bytes(4243)]
    await store.retention.sweep(settings.retention_days)
    assert files_holding(settings.data_dir, mine) == []
    left = _of_models_and_jobs(settings.data_dir)
    assert {p.relative_to(settings.data_dir).parts[:2] for p in left} == {
        ("models", str(boris_model)), ("jobs", str(boris_draw))}, left
    assert await store.users.get(ann.id) is None
    rows = {table: (await store.db.fetchone(f"SELECT count(*) FROM {table} WHERE {column} = ?", (ann.id,)))[0]
            for table, column in (("photos", "owner_id"), ("models", "owner_id"), ("shares", "by_user_id"),
                                  ("chats", "id"))}
    assert rows == dict.fromkeys(rows, 0), rows
    jobs = await store.db.fetchall("SELECT kind, payload FROM jobs WHERE owner_id = ?", (ann.id,))
    assert [j["kind"] for j in jobs] == ["train"]  # the bare row that keeps today's training cap honest
    everything = [str(tuple(r)) for t in ("jobs", "job_events", "deliveries")
                  for r in await store.db.fetchall(f"SELECT * FROM {t}")]
    assert not [row for row in everything if "qx4471" in row]  # digits alone turn up in timestamps
    assert (await store.models.get(boris_model)).status == "ready"
