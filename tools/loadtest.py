"""Load benchmark: many simulated users against the real bot and a real engine on the tiny model; prints one JSON.

    python tools/loadtest.py --users 50            # about three minutes on a 2-core machine
    python tools/loadtest.py --users 10 --out docs/bench/…-loadtest.json

Each user, arriving within the first --arrive seconds and pausing --think-min…--think-max seconds between actions
(as people do): /start, two photos, /photos, /draw, a press of "again" under the result, /help. A few users flood (a dozen texts back to back; big thin PNGs as files), two users train meanwhile.
After an unmeasured warm-up pass, the whole script runs three times on the same bot and engine, each time from idle:
once as is (calm), once with one user's chat under Telegram's flood control (paced: every message to it sooner than
--paced-every seconds after the last one gets 429 with its retry_after), and once while one more user sends
--flood-texts texts back to back (flood). Throughout, the fake Bot API applies Telegram's flood limit of about one
message a second per chat, so each of the flooder's answers costs the bot a second. Figures: updates/s, time to the first answer (p50/p95, every measured action), time from /draw to
its pictures (p50/p95), results lost and duplicates (both must be 0), and how much the chat under 429 added to
everyone else's p95, and how much the flood of texts added to everyone else's p95 (it must stay within 1 s).

This is not a test: it asserts nothing and its figures depend on the machine (and on what else runs on it; the
JSON carries the load average). The fake Bot API server comes from tests/fake_telegram.py: it is the only stand-in
(for the Telegram cloud), the same one the suite uses, so the bot meets exactly the Bot API the tests pin down.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage import Storage  # noqa: E402
from tests.fake_telegram import Call, FakeTelegram  # noqa: E402
from tests.helpers import photo_bytes  # noqa: E402

ANSWERS = {"sendMessage", "sendPhoto", "sendMediaGroup", "sendDocument", "answerCallbackQuery", "editMessageText"}
IMAGES = {"sendPhoto", "sendMediaGroup"}
FIRST_USER = 500_000


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[index], 3)


@dataclass
class Figures:
    first_answer: dict[int, list[float]] = field(default_factory=dict)  # user id → seconds per measured action
    by_action: dict[str, list[float]] = field(default_factory=dict)  # "/start", "photo", … → seconds
    draw_to_image: list[float] = field(default_factory=list)
    nonces: dict[str, int] = field(default_factory=dict)  # draw nonce → user id
    updates: int = 0
    timeouts: int = 0


class Load:
    def __init__(self, fake: FakeTelegram, figures: Figures, timeout_s: float, arrive_s: float,
                 think_s: tuple[float, float]) -> None:
        self.fake = fake
        self.figures = figures
        self.timeout_s = timeout_s
        self.arrive_s = arrive_s
        self.think_s = think_s

    async def think(self) -> None:
        await asyncio.sleep(random.uniform(*self.think_s))

    async def answer(self, user_id: int, since: int, match=None) -> Call | None:
        """The first call of the bot to this chat after call number `since` (that `match` accepts)."""

        def found() -> Call | None:
            for call in self.fake.calls[since:]:
                if call.error is None and call.chat_id == user_id and call.method in ANSWERS \
                        and (match is None or match(call)):
                    return call
                if call.method == "answerCallbackQuery" and call.error is None and match is not None and match(call):
                    return call
            return None

        try:
            return await self.fake.wait_for(found, self.timeout_s, what=f"an answer to {user_id}")
        except AssertionError:
            self.figures.timeouts += 1
            return None

    async def act(self, user: dict, push, match=None, measured: bool = True, what: str = "?") -> Call | None:
        since = len(self.fake.calls)
        started = time.monotonic()
        push()
        self.figures.updates += 1
        call = await self.answer(user["id"], since, match)
        if call is not None and measured:
            self.figures.first_answer.setdefault(user["id"], []).append(call.at - started)
            self.figures.by_action.setdefault(what, []).append(call.at - started)
        return call

    async def user_script(self, user: dict, seed: int, phase: str) -> None:
        fake, uid = self.fake, user["id"]
        await asyncio.sleep(random.uniform(0, self.arrive_s))
        await self.act(user, lambda: fake.send_text(user, "/start"), what="/start")
        for k in range(2):
            await self.think()
            await self.act(user, lambda k=k: fake.send_photo(user, photo_bytes(seed * 10 + k, (256, 256))),
                           what="photo")
        await self.think()
        await self.act(user, lambda: fake.send_text(user, "/photos"), what="/photos")
        await self.think()
        nonce = f"n{phase}{uid}"
        self.figures.nonces[nonce] = uid
        since = len(fake.calls)
        started = time.monotonic()
        await self.act(user, lambda: fake.send_text(user, f"/draw sks dog {nonce} --n 2"), what="/draw")
        image = await self.answer(uid, since, lambda c: c.method in IMAGES and nonce in _caption(c))
        if image is not None:
            self.figures.draw_to_image.append(image.at - started)
            buttons = await self.answer(uid, since, lambda c: "More like this" in str(c.params.get("text")))
            if buttons is not None and buttons.result:
                again = buttons.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
                message = fake.messages[(uid, buttons.result["message_id"])]
                await self.think()
                await self.act(user, lambda: fake.press_button(user, message, again),
                               match=lambda c: c.method == "answerCallbackQuery", what="button")
        await self.think()
        await self.act(user, lambda: fake.send_text(user, "/help"), what="/help")

    async def flood(self, user: dict) -> None:
        for i in range(12):
            self.fake.send_text(user, f"hello {i}")
            self.figures.updates += 1
        await asyncio.sleep(0)

    async def text_flood(self, user: dict, count: int) -> None:
        """One user sends `count` texts at once (a script, or a stuck key): each would take a second to answer."""
        for i in range(count):
            self.fake.send_text(user, f"spam {i}")
            self.figures.updates += 1
        await asyncio.sleep(0)

    async def thin_pictures(self, user: dict) -> None:
        """Big thin PNGs sent as files: each decodes to 40 million pixels (the image threads, not the loop)."""
        data = _thin_png()
        for i in range(4):
            self.fake.send_document(user, data, f"thin-{i}.png", "image/png")
            self.figures.updates += 1

    async def trainer(self, user: dict, seed: int) -> None:
        for k in range(3):
            await self.act(user, lambda k=k: self.fake.send_photo(user, photo_bytes(seed + k, (256, 256))),
                           measured=False)
        await self.act(user, lambda: self.fake.send_text(user, "/train cat"), measured=False)


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 1)
    except (OSError, IndexError, ValueError):
        return None


def _caption(call: Call) -> str:
    if call.method == "sendMediaGroup":
        media = call.params.get("media") or [{}]
        return str(media[0].get("caption", ""))
    return str(call.params.get("caption", ""))


def _thin_png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (2, 19_999_999), 128).save(out, format="PNG")
    return out.getvalue()


async def seed_models(data_dir: Path, lora: Path, users: list[dict]) -> None:
    """Every user owns a ready model with the seed user's real LoRA (written through storage)."""
    store = await Storage.open(data_dir)
    try:
        for user in users:
            await store.users.upsert(user["id"], first_name=user["first_name"], language="en")
            await store.lifecycle.import_model(user["id"], name="dog", class_word="dog", token="sks",
                                               weights=lora.read_bytes())
    finally:
        await store.close()


async def judge(data_dir: Path, fake: FakeTelegram, nonces: dict[str, int], drain_s: float) -> dict:
    """Every draw the engine finished must reach its chat exactly once (a job's pictures are known by its prompt's
    nonce and its seeds in the caption): lost = finished but never delivered; duplicates = delivered again."""
    store = await Storage.open(data_dir)
    try:
        deadline = time.monotonic() + drain_s
        while True:
            rows = await store.db.fetchall(
                "SELECT id, payload, result FROM jobs WHERE kind = 'draw' AND status = 'done'")
            marks = {}
            for row in rows:
                nonce = next((w for w in json.loads(row["payload"])["prompt"].split() if w in nonces), None)
                if nonce is not None:
                    seeds = json.loads(row["result"])["seeds"]
                    marks[row["id"]] = [nonce, *(f"#{i + 1}: {seed}" for i, seed in enumerate(seeds))]
            pictures = [_caption(c) for c in fake.calls if c.method in IMAGES and c.error is None]
            sent = {job: sum(all(m in caption for m in mark) for caption in pictures) for job, mark in marks.items()}
            lost = [job for job, count in sent.items() if count == 0]
            if not lost or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        return {"draws_finished": len(marks), "results_lost": len(lost),
                "duplicates": sum(count - 1 for count in sent.values() if count > 1)}
    finally:
        await store.close()


async def quiet(data_dir: Path, fake: FakeTelegram, timeout_s: float) -> None:
    """Until the engine has no job left and the bot has gone quiet: each phase starts from the same idle state."""
    store = await Storage.open(data_dir)
    try:
        deadline = time.monotonic() + timeout_s
        while await store.jobs.unfinished_count() and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
    finally:
        await store.close()
    await fake.wait_idle(quiet=2.0, timeout=timeout_s)


async def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="kabina-load-"))
    data_dir = work / "data"
    model = Path(args.model) if args.model else work / "tiny-model"
    if not args.model:
        subprocess.run([sys.executable, "-m", "engine", "tiny-model", str(model)], cwd=ROOT, check=True,
                       capture_output=True)
    fake = FakeTelegram()
    fake.flood_per_chat = (1, 1.0)  # Telegram: about one message a second to a chat
    await fake.start()
    env = {**os.environ, "BOT_TOKEN": fake.token, "TELEGRAM_API_URL": fake.base_url, "DATA_DIR": str(data_dir),
           "BASE_MODEL": str(model), "DEVICE": "cpu", "NUM_CLASS_IMAGES": "2", "TRAIN_STEPS": str(args.train_steps), "DRAW_STEPS": "3",
           "MIN_PHOTOS": "3", "MAX_PHOTOS": "20", "DAILY_TRAININGS": "50", "LOG_LEVEL": "WARNING",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    logs = {name: open(work / f"{name}.log", "wb") for name in ("bot", "engine")}  # noqa: SIM115 - closed below
    processes = [
        subprocess.Popen([sys.executable, "-m", "bot"], cwd=ROOT, env=env, stdout=logs["bot"], stderr=subprocess.STDOUT),
        subprocess.Popen([sys.executable, "-m", "engine", "--poll-s", "0.05"], cwd=ROOT, env=env,
                         stdout=logs["engine"], stderr=subprocess.STDOUT),
    ]
    try:
        await fake.wait_call("setMyCommands", count=4, timeout=120)
        # One real training gives the LoRA every simulated user draws with.
        seeder = fake.user(FIRST_USER - 1, "Seed", "en")
        fake.send_album(seeder, [photo_bytes(i, (256, 256)) for i in range(3)])
        await fake.wait_for(lambda: any("Saved 3" in t for t in fake.texts(seeder["id"])), 60, what="seed photos")
        fake.send_text(seeder, "/train dog")
        await fake.wait_for(lambda: any("model is ready" in t for t in fake.texts(seeder["id"])), 600,
                            what="the seed training")
        lora = next((data_dir / "models").glob("*/lora.safetensors"))
        users = [fake.user(FIRST_USER + i, f"User{i}", "en") for i in range(args.users)]
        await seed_models(data_dir, lora, users)

        phases = {}
        every_nonce: dict[str, int] = {}
        if args.warm_up:
            # Unmeasured: the engine loads every user's LoRA once, so neither measured phase pays for it.
            warm = Figures()
            await asyncio.gather(*(Load(fake, warm, args.timeout, args.arrive, (args.think_min, args.think_max))
                                   .user_script(u, 5000 + i, "warm") for i, u in enumerate(users)))
            every_nonce.update(warm.nonces)
        for phase in args.phases:
            await quiet(data_dir, fake, args.drain)
            figures = Figures()
            load = Load(fake, figures, args.timeout, args.arrive, (args.think_min, args.think_max))
            victim = users[0]
            if phase == "paced":
                fake.pace_chat(victim["id"], args.paced_every)
            shift = 100 * args.phases.index(phase)  # fresh extra users and photos per phase
            extra = [fake.user(FIRST_USER + 10_000 + i + shift, f"Extra{i}", "en") for i in range(4)]
            flooder = [load.text_flood(fake.user(FIRST_USER + 20_000 + shift, "Flooder", "en"), args.flood_texts)
                       ] if phase == "flood" else []
            started = time.monotonic()
            await asyncio.gather(
                *flooder,
                *(load.user_script(u, i + 10 * shift, phase) for i, u in enumerate(users)),
                *([load.flood(extra[0]), load.flood(extra[1]), load.thin_pictures(extra[2]),
                   load.trainer(extra[3], 7000 + shift)] if args.extras else []),
            )
            elapsed = time.monotonic() - started
            verdict = await judge(data_dir, fake, figures.nonces, args.drain)
            every_nonce.update(figures.nonces)
            others = [s for uid, values in figures.first_answer.items() if uid != victim["id"] for s in values]
            phases[phase] = {
                "updates": figures.updates,
                "updates_per_s": round(figures.updates / elapsed, 2),
                "first_answer_s": {"p50": percentile(others, 50), "p95": percentile(others, 95),
                                   "measured": len(others)},
                "draw_to_image_s": {"p50": percentile(figures.draw_to_image, 50),
                                    "p95": percentile(figures.draw_to_image, 95)},
                "first_answer_p95_s_by_action": {k: percentile(v, 95) for k, v in sorted(figures.by_action.items())},
                "unanswered": figures.timeouts,
                **verdict,
            }
            fake.pace_chat(victim["id"], 0.0)
        overall = await judge(data_dir, fake, every_nonce, args.drain)  # "again" draws may finish after their phase
        calm = phases.get("calm") or next(iter(phases.values()))
        paced = phases.get("paced", calm)
        base, busy = calm["first_answer_s"]["p95"], paced["first_answer_s"]["p95"]
        flooded = phases.get("flood", {}).get("first_answer_s", {}).get("p95")
        return {
            "users": args.users,
            "updates_per_s": paced["updates_per_s"],
            "first_answer_p50_s": paced["first_answer_s"]["p50"],
            "first_answer_p95_s": busy,
            "draw_to_image_p50_s": paced["draw_to_image_s"]["p50"],
            "draw_to_image_p95_s": paced["draw_to_image_s"]["p95"],
            "results_lost": overall["results_lost"],
            "duplicates": overall["duplicates"],
            "draws_finished": overall["draws_finished"],
            "chat_under_429_adds_to_others_p95_pct": round(100 * (busy - base) / base, 1) if base and busy else None,
            "flood_of_texts": {"texts": args.flood_texts if "flood" in phases else 0, "others_p95_calm_s": base,
                               "others_p95_flood_s": flooded,
                               "adds_to_others_p95_s": round(flooded - base, 3) if base and flooded else None},
            "phases": phases,
            "machine": {"cpus": os.cpu_count(), "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
            "cpu_s": {"bot": _cpu_s(processes[0].pid), "engine": _cpu_s(processes[1].pid),
                      "load_driver_and_fake_api": round(time.process_time(), 1)},
            "command": " ".join(["python", "tools/loadtest.py", *sys.argv[1:]]),
        }
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        for handle in logs.values():
            handle.close()
        await fake.stop()
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--paced-every", type=float, default=3.0, help="seconds between messages the paced chat gets")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds an answer may take before it is unanswered")
    parser.add_argument("--drain", type=float, default=120.0, help="seconds to wait for the last results")
    parser.add_argument("--model", help="an existing tiny model folder (default: build one)")
    parser.add_argument("--out", type=Path, help="also write the JSON here (docs/bench/…)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder with the bot and engine logs")
    parser.add_argument("--arrive", type=float, default=15.0, help="users arrive spread over this many seconds")
    parser.add_argument("--think-min", type=float, default=0.5, help="a user's pause between actions, at least")
    parser.add_argument("--think-max", type=float, default=2.0, help="… and at most (seconds)")
    parser.add_argument("--no-warm-up", dest="warm_up", action="store_false",
                        help="skip the unmeasured first pass (it loads every user's LoRA into the engine)")
    parser.add_argument("--phases", nargs="+", default=["calm", "paced", "flood"], choices=["calm", "paced", "flood"])
    parser.add_argument("--no-extras", dest="extras", action="store_false",
                        help="leave out the small floods, the big thin PNGs and the trainings (the suite's quick run)")
    parser.add_argument("--train-steps", type=int, default=12, help="steps of each training (the seed's too)")
    parser.add_argument("--flood-texts", type=int, default=250, help="texts the flooder sends in the flood phase")
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args))
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
