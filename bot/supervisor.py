"""`kabina`: one command for a single-machine install — starts the bot and the engine and looks after both."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field

from storage import ConfigError, load_settings
from storage.logs import setup_logging

log = logging.getLogger("kabina.supervisor")

NO_MODEL_HELP = """\
Kabina's engine needs a Stable Diffusion 1.x base model on this machine, and nothing is downloaded at run time.
  * Get one once, on any machine with internet access: an SD 1.5 diffusers folder (model_index.json, unet/, vae/,
    text_encoder/, tokenizer/, scheduler/) or a single-file .safetensors checkpoint; copy it here and set
    BASE_MODEL=/path/to/it in .env.
  * Or try the whole flow right now on a tiny random model (its pictures are noise, but every step works):
        python -m engine tiny-model ./data/tiny-model
        echo BASE_MODEL=./data/tiny-model >> .env
        kabina
"""


@dataclass
class Child:
    """One supervised process: restarted with growing pauses if it dies, stopped with SIGTERM at the end."""

    name: str
    argv: list[str]
    grace_s: float = 30.0  # the engine checkpoints its training step on SIGTERM; give it time
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    stable_after_s: float = 60.0
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    _delay: float = field(default=0.0, init=False)

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(*self.argv)
        log.info("started %s (pid %s)", self.name, self.process.pid)

    async def run(self, stopping: asyncio.Event) -> None:
        """Keep the child alive until `stopping` is set."""
        self._delay = self.backoff_s
        while not stopping.is_set():
            started = time.monotonic()
            await self.start()
            assert self.process is not None
            waiter = asyncio.create_task(self.process.wait())
            stopper = asyncio.create_task(stopping.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if stopping.is_set():
                waiter.cancel()
                return
            code = self.process.returncode
            if time.monotonic() - started >= self.stable_after_s:
                self._delay = self.backoff_s  # it ran well for a while: the next crash is a new story
            log.warning("%s exited with code %s; restarting in %.0f s", self.name, code, self._delay)
            self.restarts += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self._delay)
            self._delay = min(self._delay * 2, self.max_backoff_s)

    async def stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=self.grace_s)
            log.info("%s stopped (code %s)", self.name, process.returncode)
        except TimeoutError:
            log.warning("%s did not stop within %.0f s; killing it", self.name, self.grace_s)
            process.kill()
            await process.wait()


async def supervise(children: list[Child]) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    runners = [asyncio.create_task(child.run(stopping)) for child in children]
    await stopping.wait()
    log.info("stopping %s", ", ".join(c.name for c in children))
    # The bot first (no new work comes in), then the engine gets its grace to checkpoint.
    for child in children:
        await child.stop()
    await asyncio.gather(*runners, return_exceptions=True)
    return 0


def default_children() -> list[Child]:
    python = sys.executable
    return [
        Child("bot", [python, "-m", "bot"], grace_s=15.0),
        Child("engine", [python, "-m", "engine"], grace_s=60.0),
    ]


def main() -> int:
    try:
        settings = load_settings()
        token = settings.require_bot_token()
    except ConfigError as exc:
        print(f"kabina: {exc}", file=sys.stderr)
        return 2
    setup_logging("supervisor", secrets=[token], level=settings.log_level)
    try:
        settings.require_base_model()
    except ConfigError as exc:
        message = "BASE_MODEL is not set." if settings.base_model is None else str(exc)
        print(f"kabina: {message}\n\n{NO_MODEL_HELP}", file=sys.stderr)
        return 2
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return asyncio.run(supervise(default_children()))


if __name__ == "__main__":
    sys.exit(main())
