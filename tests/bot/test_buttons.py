"""Inline buttons do only what the person pressing them may do: callback data is chosen by the client."""

from __future__ import annotations

from bot.keyboards import DrawAction
from storage import Storage
from tests.fake_telegram import FakeTelegram
from tests.helpers import StandInWorker, User, make_ready_model, settled


async def test_a_forged_again_button_for_someone_elses_drawing_is_refused(
    kabina, fake: FakeTelegram, store: Storage, ann: User, cleo: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    ann.say("/draw sks dog at 221B Baker Street, door code 4471")
    job = await worker.claim("draw")
    await worker.finish_draw(job)
    await settled(store, job.id)
    for action in ("again", "vary"):
        forged = DrawAction(action=action, job_id=job.id, index=0).pack()
        fake.press_button(cleo.data, {"chat": {"id": cleo.id}, "message_id": 1, "text": ""}, forged)
    answers = await fake.wait_call("answerCallbackQuery", count=2)
    assert [a.params.get("text") for a in answers] == ["That is not yours to use."] * 2
    assert await store.jobs.active_for_owner(cleo.id) == []
    assert not any("Baker" in str(c.params) for c in fake.calls if c.chat_id == cleo.id)
