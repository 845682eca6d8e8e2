"""The versioned schema: each migration moves the database from version N-1 to N."""

from __future__ import annotations

import re

# Each entry is one schema version; never edit a released one, append a new one.
MIGRATIONS: list[list[str]] = [
    # 1: users, chats, photo sets, models, shares, the job queue and its event feed
    [
        """CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            username TEXT, first_name TEXT, language TEXT,
            default_model_id INTEGER,
            created_at REAL NOT NULL)""",
        """CREATE TABLE chats (
            id INTEGER PRIMARY KEY, type TEXT NOT NULL, title TEXT, created_at REAL NOT NULL)""",
        """CREATE TABLE photos (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            owner_id INTEGER NOT NULL, file_unique_id TEXT NOT NULL, sha256 TEXT NOT NULL,
            size INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, path TEXT NOT NULL,
            created_at REAL NOT NULL,
            UNIQUE (owner_id, file_unique_id), UNIQUE (owner_id, sha256))""",
        """CREATE TABLE models (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            owner_id INTEGER NOT NULL, name TEXT NOT NULL, class_word TEXT NOT NULL, token TEXT,
            status TEXT NOT NULL, weights_path TEXT, kohya_path TEXT, sample_paths TEXT,
            params TEXT NOT NULL DEFAULT '{}', photo_paths TEXT NOT NULL DEFAULT '[]',
            version INTEGER NOT NULL DEFAULT 1, job_id INTEGER, error TEXT,
            created_at REAL NOT NULL, updated_at REAL NOT NULL)""",
        # A user's live models never share an identifier token.
        """CREATE UNIQUE INDEX models_live_token ON models (owner_id, token)
            WHERE token IS NOT NULL AND status NOT IN ('failed', 'deleted')""",
        """CREATE TABLE shares (
            model_id INTEGER NOT NULL REFERENCES models (id), chat_id INTEGER NOT NULL,
            by_user_id INTEGER NOT NULL, created_at REAL NOT NULL,
            PRIMARY KEY (model_id, chat_id))""",
        """CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL, status TEXT NOT NULL, priority INTEGER NOT NULL, payload TEXT NOT NULL,
            owner_id INTEGER, chat_id INTEGER, model_id INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,
            lease_owner TEXT, lease_expires_at REAL,
            progress TEXT, result TEXT, error TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL, started_at REAL, finished_at REAL)""",
        "CREATE INDEX jobs_claim ON jobs (status, priority DESC, id)",
        "CREATE INDEX jobs_owner ON jobs (owner_id, kind, created_at)",
        """CREATE TABLE job_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id INTEGER NOT NULL, kind TEXT NOT NULL, data TEXT, created_at REAL NOT NULL)""",
    ],
    # 2: exactly-once delivery, feed cursors, durable intake and share links
    [
        """CREATE TABLE deliveries (
            job_id INTEGER NOT NULL, what TEXT NOT NULL, chat_id INTEGER NOT NULL, message_id INTEGER,
            state TEXT NOT NULL, data TEXT, updated_at REAL NOT NULL,
            PRIMARY KEY (job_id, what))""",
        "CREATE TABLE cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL)",
        "CREATE TABLE processed_updates (update_id INTEGER PRIMARY KEY, processed_at REAL NOT NULL)",
        """CREATE TABLE share_links (
            code TEXT PRIMARY KEY, model_id INTEGER NOT NULL REFERENCES models (id),
            created_at REAL NOT NULL, revoked_at REAL)""",
        "ALTER TABLE shares ADD COLUMN via_link TEXT",
    ],
    # 3: what each running engine's base model allows (the bot takes its limits from it)
    [
        "CREATE TABLE engines (worker_id TEXT PRIMARY KEY, info TEXT NOT NULL, seen_at REAL NOT NULL)",
    ],
    # 4 (security): indexes for fair claims, deleting a model's or user's jobs, ending shares, pruning by age
    [
        # security: indexes for fair claims (an owner's last start), deleting a model's or user's jobs, ending a
        # chat's shares, and pruning events, updates and deliveries by age
        "CREATE INDEX jobs_owner_started ON jobs (owner_id, started_at)",
        "CREATE INDEX jobs_model ON jobs (model_id)",
        "CREATE INDEX jobs_finished ON jobs (status, finished_at)",
        "CREATE INDEX job_events_job ON job_events (job_id)",
        "CREATE INDEX job_events_created ON job_events (created_at)",
        "CREATE INDEX shares_chat ON shares (chat_id)",
        "CREATE INDEX processed_updates_at ON processed_updates (processed_at)",
        "CREATE INDEX deliveries_updated ON deliveries (updated_at)",
    ],
    # 5 (faults): job leases judged on the claimer's own clock (length and renewal count), the bot's leader lease,
    # album parts waiting for their one summary (so a restarted bot still sends it), and the updates a bot took
    # into its own keeping while they were slow to finish (so the offset need not wait for them)
    [
        "ALTER TABLE jobs ADD COLUMN lease_s REAL",
        "ALTER TABLE jobs ADD COLUMN lease_renewals INTEGER NOT NULL DEFAULT 0",
        """CREATE TABLE leases (
            name TEXT PRIMARY KEY, holder TEXT, expires_at REAL, lease_s REAL NOT NULL,
            renewals INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL)""",
        """CREATE TABLE album_parts (
            chat_id INTEGER NOT NULL, media_group_id TEXT NOT NULL, update_id INTEGER NOT NULL,
            owner_id INTEGER NOT NULL, result TEXT NOT NULL, reply_to INTEGER, lang TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (chat_id, media_group_id, update_id))""",
        "CREATE TABLE kept_updates (update_id INTEGER PRIMARY KEY, raw TEXT NOT NULL, kept_at REAL NOT NULL)",
    ],
    # 6 (operators): users an admin banned (told once, then ignored), the moment an admin gave a user their daily
    # allowance back, and when each engine last said it was alive (its heartbeat, apart from when it started)
    [
        """CREATE TABLE bans (
            user_id INTEGER PRIMARY KEY, by_user_id INTEGER NOT NULL, created_at REAL NOT NULL, told_at REAL)""",
        "CREATE TABLE allowance_resets (user_id INTEGER PRIMARY KEY, reset_at REAL NOT NULL)",
        "ALTER TABLE engines ADD COLUMN alive_at REAL",
    ],
    # 7 (ux): a user's own choices — the language picked with /language and the /settings defaults for /draw
    [
        "ALTER TABLE users ADD COLUMN preferences TEXT NOT NULL DEFAULT '{}'",
    ],
    # 8 (lifecycle): a failure is a code (jobs.error, models.error) with its parameters, said by the bot in the
    # user's language
    [
        "ALTER TABLE jobs ADD COLUMN error_params TEXT",
    ],
    # 9 (lifecycle): columns that hold blob keys are named for it
    [
        "ALTER TABLE models RENAME COLUMN weights_path TO weights_key",
        "ALTER TABLE models RENAME COLUMN kohya_path TO kohya_key",
        "ALTER TABLE models RENAME COLUMN sample_paths TO sample_keys",
        "ALTER TABLE models RENAME COLUMN photo_paths TO photo_keys",
        "ALTER TABLE photos RENAME COLUMN path TO blob_key",
    ],
    # 10 (hostile): the class words of their own a user has trained, as bare hashes that outlive /forgetme (like
    # the daily training count), so forgetting is no way around the lifetime allowance of invented words
    [
        """CREATE TABLE class_words_used (user_id INTEGER NOT NULL, word_hash TEXT NOT NULL,
           PRIMARY KEY (user_id, word_hash))""",
    ],
]

LATEST_VERSION = len(MIGRATIONS)

# The DDL is written for SQLite; PostgreSQL differs in types only. REAL is 4 bytes there (a timestamp would lose
# minutes), and INTEGER columns hold Telegram ids up to 2^52, so both are widened; AUTOINCREMENT is an identity.
_POSTGRES_TYPES = [
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
]


def postgres_ddl(statement: str) -> str:
    """One migration statement as PostgreSQL writes it."""
    for pattern, replacement in _POSTGRES_TYPES:
        statement = pattern.sub(replacement, statement)
    return statement
