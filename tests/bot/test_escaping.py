"""What users typed comes back to them as text, never as markup: the fake refuses bad HTML as Telegram does."""

from __future__ import annotations

from storage import Storage
from tests.fake_telegram import FakeTelegram
from tests.helpers import StandInWorker, User, make_ready_model, settled, wait_reply


def _sent(fake: FakeTelegram, method: str, chat_id: int) -> list:
    """Every call of `method` to the chat, answered or refused."""
    return [c for c in fake.calls if c.method == method and c.chat_id == chat_id]


async def test_a_prompt_with_markup_characters_is_shown_as_typed_in_the_caption(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    ann.say("/draw sks dog <3 & <b>friends</b>")
    job = await worker.claim("draw")
    await worker.finish_draw(job)
    await settled(store, job.id)
    photos = _sent(fake, "sendPhoto", ann.id)
    assert [c.error for c in photos] == [None], [c.error for c in photos]
    assert "sks dog &lt;3 &amp; &lt;b&gt;friends&lt;/b&gt;" in photos[0].params["caption"]


async def test_a_failure_reason_with_markup_characters_reaches_the_user_as_text(
    kabina, fake: FakeTelegram, store: Storage, ann: User, worker: StandInWorker
) -> None:
    await make_ready_model(store, ann.id)
    ann.say("/draw sks dog")
    job = await worker.claim("draw")
    await store.jobs.fail(job.id, worker.worker_id, "The <prompt> & the seed did not fit")
    await settled(store, job.id)
    replies = [c for c in _sent(fake, "sendMessage", ann.id) if "fit" in c.params.get("text", "")]
    assert [c.error for c in replies] == [None], [c.error for c in replies]
    assert "The &lt;prompt&gt; &amp; the seed did not fit" in replies[0].params["text"]


async def test_the_fake_refuses_what_telegram_refuses_under_html(kabina, fake: FakeTelegram, ann: User) -> None:
    """The instrument itself: unescaped markup sent by the bot would be refused, not silently shown."""
    from tests.fake_telegram import _BadRequest, check_telegram_html

    for bad in ("a < b", "fish & chips", "<b>unclosed", "<script>x</script>", "&nbsp;"):
        try:
            check_telegram_html(bad)
        except _BadRequest as refused:
            assert "can't parse entities" in str(refused)
        else:
            raise AssertionError(f"the fake accepted {bad!r}")
    ann.say("/help")
    await wait_reply(fake, ann.id, "Kabina")
    assert all(c.params.get("parse_mode") == "HTML" for c in fake.calls_of("sendMessage", ann.id))
