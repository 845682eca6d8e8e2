"""`python -m bot`: run the Telegram bot until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from bot.app import InvalidToken, main
from storage import ConfigError, load_settings
from storage.logs import log_loop_exceptions, setup_logging


async def _serve() -> None:
    settings = load_settings()
    token = settings.bot_token.get_secret_value() if settings.bot_token else ""
    # Every way out of the process (uncaught exceptions, the loop's complaints, warnings) goes through the
    # redacting handler from here on.
    setup_logging("bot", secrets=[token], level=settings.log_level, fmt=settings.log_format)
    log_loop_exceptions(asyncio.get_running_loop(), "bot")
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
    try:
        await main(settings)
    except asyncio.CancelledError:
        logging.getLogger("bot").info("stopped")


def run() -> int:
    try:
        asyncio.run(_serve())
    except (ConfigError, InvalidToken) as exc:
        print(f"kabina bot: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run())
