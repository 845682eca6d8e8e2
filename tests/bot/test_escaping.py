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
    await store.lifecycle.fail(job.id, worker.worker_id, "The <prompt> & the seed did not fit")
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


async def test_an_unknown_option_with_markup_is_refused_without_repeating_it(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    await make_ready_model(store, ann.id)
    ann.say("/draw sks dog --<b>")
    (reply,) = await fake.wait_for(lambda: _sent(fake, "sendMessage", ann.id), what="a reply")
    assert reply.error is None, reply.error
    assert "I don't know that option" in reply.params["text"] and "&lt;b" not in reply.params["text"]


async def test_a_link_typed_as_an_option_in_a_group_is_never_posted_as_a_link(
    kabina, fake: FakeTelegram, ann: User, cleo: User
) -> None:
    """In any group, with no model at all: the bot must not become a phishing link's messenger."""
    from tests.fake_telegram import BOT_USERNAME

    group = FakeTelegram.group_chat(-100999, "Anyone's group")
    cleo.say(f"/draw@{BOT_USERNAME} \"--<a href='https://evil.example/verify'>Tap here to keep your models</a>\"",
             chat=group)
    (reply,) = await fake.wait_for(lambda: _sent(fake, "sendMessage", group["id"]), what="a reply")
    assert reply.error is None, reply.error
    assert "<a" not in reply.params["text"]
    # Not even escaped: Telegram would turn the URL in the bot's own words into a link.
    assert "evil.example" not in reply.params["text"] and "I don't know that option" in reply.params["text"]


async def test_names_group_titles_and_first_names_reach_everyone_as_text(
    kabina, fake: FakeTelegram, store: Storage
) -> None:
    from tests.fake_telegram import BOT_USERNAME

    owner = User(fake, fake.user(1010, "<i>Ann</i> & Co", "en", "annco"))
    group = FakeTelegram.group_chat(-100321, "<b>Tom & Jerry</b>")
    await make_ready_model(store, owner.id, class_word="teddy bear")
    owner.say(f"/share@{BOT_USERNAME}", chat=group)
    shared = await wait_reply(fake, group["id"], "now shared")
    assert "&lt;i&gt;Ann&lt;/i&gt; &amp; Co" in shared
    owner.say("/models")
    card = await wait_reply(fake, owner.id, "shared in")
    assert "&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;" in card
    fake.bot_membership(group, owner.data, new="kicked")
    told = await wait_reply(fake, owner.id, "I was removed from")
    assert "«&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;»" in told and "teddy bear" in told
    assert all(c.error is None for c in fake.calls if c.method == "sendMessage")


def test_texts_escape_every_value_unless_it_is_marked_as_markup() -> None:
    from bot.formatting import Markup, code, escape, fit_lines
    from bot.texts import Texts

    t = Texts("en")
    assert t("draw_failed", reason="<b>x</b> & y") == "😔 Drawing failed: &lt;b&gt;x&lt;/b&gt; &amp; y"
    assert t("draw_failed", reason=code("a<b")) == "😔 Drawing failed: <code>a&lt;b</code>"
    assert escape(escape("<")) == "&lt;" and isinstance(t("draw_started"), Markup)
    text, left_out = fit_lines([code(f"line {i}") for i in range(1000)], 4000, lambda n: Markup(f"+{n}"))
    assert len(text) <= 4000 and left_out > 0 and text.endswith(f"+{left_out}")


async def test_a_refusal_never_repeats_a_link_a_mention_or_a_command_the_user_typed(
    kabina, fake: FakeTelegram, store: Storage, ann: User, boris: User, cleo: User
) -> None:
    """Telegram turns URLs, domains, @mentions and /commands in the bot's own words into links: a refusal in a
    group must not lend the bot's voice to one."""
    from tests.fake_telegram import BOT_USERNAME

    group = FakeTelegram.group_chat(-100555, "Neighbours")
    hostile = ["\"--<a href='https://evil.example/x'>Tap</a>\"", "--evil.example", "--@everyone_admin",
               "--/start", "--#giveaway", "--sampler https://evil.example/y"]
    for i, typed in enumerate(hostile):  # three people, two each: within the drawing rate limit
        (ann, boris, cleo)[i % 3].say(f"/draw@{BOT_USERNAME} sks dog {typed} 4", chat=group)
    await fake.wait_for(lambda: len(fake.texts(group["id"])) == len(hostile), what="one refusal each")
    said = "\n".join(fake.texts(group["id"]))
    for link in ("evil", "http", "@everyone", "/start", "#giveaway"):
        assert link not in said, said
    assert "I don't know that option" in said
    cleo.say(f"/draw@{BOT_USERNAME} sks dog --colour 4", chat=group)  # a plain word is still named
    assert "--colour" in await wait_reply(fake, group["id"], "--colour")
