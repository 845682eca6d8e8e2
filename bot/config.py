"""Bot-side knobs that are not deployment settings: pacing of Telegram calls and per-user limits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    """At most `count` actions per `window_s` seconds per user."""

    count: int
    window_s: float


@dataclass(frozen=True)
class BotTuning:
    # Telegram allows about one message per second per chat; an edit every 3 s keeps a progress
    # message lively without ever earning a 429.
    progress_every_s: float = 3.0
    # The messages of an album arrive one by one; this quiet time closes the album.
    album_wait_s: float = 1.2
    chat_action_every_s: float = 4.5
    feed_poll_s: float = 0.3
    poll_timeout_s: int = 25
    draw_limit: RateLimit = RateLimit(4, 60.0)
    photo_limit: RateLimit = RateLimit(30, 60.0)
    # Plain text, /help, unknown commands, group commands…: everything typed but /draw (which has its own window).
    # Each is answered, and Telegram lets a bot answer a chat about once a second: a flood of them is cut short
    # with one polite reply.
    chatter_limit: RateLimit = RateLimit(20, 60.0)
    # The "📄 PNG" button sends every picture of a drawing again, as files.
    file_limit: RateLimit = RateLimit(3, 60.0)
    # /photos decodes the whole set (bounded, one photo at a time, but up to 20 of them): a few a minute.
    sheet_limit: RateLimit = RateLimit(3, 60.0)
    retry_attempts: int = 5
    max_retry_after_s: float = 120.0
    # How often deleted models' late files, finished trainings' checkpoints, pictures past RETENTION_DAYS and old
    # records are swept: "deleted" means gone within a minute.
    sweep_every_s: float = 30.0
    # Polling: a failed getUpdates is retried after this pause, doubling up to the cap.
    poll_retry_s: float = 1.0
    poll_max_wait_s: float = 30.0
    # While updates are being handled Telegram answers getUpdates at once with them again; look for new ones
    # this often, and hold at most this many updates at a time (the offset waits for the oldest).
    busy_poll_s: float = 0.05
    max_updates_in_flight: int = 100
    # One user's share of that window: their updates past it wait in the database (bot/polling.py), so a user
    # sending hundreds of messages never stops the bot from reading everyone else's.
    max_updates_per_lane: int = 10
    # An update still unfinished after this long (a big download, a reply to a chat under 429) is taken into the
    # database's keeping, so the offset moves on: Telegram hands out at most 100 updates past the offset, and one
    # slow update must not hide everyone else's new ones.
    keep_after_s: float = 1.0
    # Deliveries: a result that could not be sent (5xx, network, 429) is tried again after this pause,
    # doubling up to the cap, until it is sent; an unexpected error (a bug) is tried this many times.
    delivery_retry_s: float = 1.0
    delivery_max_wait_s: float = 300.0
    unexpected_error_attempts: int = 5
