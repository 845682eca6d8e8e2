"""`python -m storage bench` prints the queue's speed as one JSON object; `migrate` prepares DATA_DIR, or with
`--to DATABASE_URL --blobs BLOB_URL` copies this install into another database and blob store."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from storage import Storage, StorageError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storage")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="queue throughput and claim latency (JSON)")
    bench.add_argument("--jobs", type=int, default=2000)
    bench.add_argument("--database-url", default=None,
                       help="postgresql://… to measure PostgreSQL (in a schema of its own); default: SQLite")
    migrate = sub.add_parser("migrate", help="create or upgrade the database; with --to/--blobs copy the install")
    migrate.add_argument("--to", dest="to", default=None, metavar="DATABASE_URL",
                         help="copy DATA_DIR's SQLite database into this (empty) database, e.g. postgresql://…")
    migrate.add_argument("--blobs", default=None, metavar="BLOB_URL",
                         help="copy DATA_DIR's files into this blob store, e.g. s3://bucket?endpoint=…")
    sub.add_parser("health", help="exit 0 if the database opens at this version and DATA_DIR is writable")
    args = parser.parse_args(argv)
    try:
        if args.command == "bench":
            from storage.bench import main as run_bench

            print(json.dumps(run_bench(args.jobs, args.database_url)))
        elif args.command == "health":
            settings = load_settings()

            async def health() -> None:
                store = await Storage.open(settings.data_dir, database_url=settings.database_url,
                                           blob_url=settings.blob_url)
                try:
                    await store.db.fetchone("SELECT count(*) FROM jobs")
                    store.files.write_atomic(store.files.root / "tmp" / "health", b"ok")
                finally:
                    await store.close()

            asyncio.run(health())
            print("ok")
        elif args.to or args.blobs:
            if not (args.to and args.blobs):
                print("error: give both --to DATABASE_URL and --blobs BLOB_URL", file=sys.stderr)
                return 2
            from storage.transfer import transfer

            report = asyncio.run(transfer(load_settings().data_dir, args.to, args.blobs))
            print(json.dumps(report.as_dict()))
        else:
            settings = load_settings()

            async def migrate() -> int:
                store = await Storage.open(settings.data_dir, database_url=settings.database_url,
                                           blob_url=settings.blob_url)
                version = await store.db.version()
                await store.close()
                return version

            where = store_url = settings.database_url
            if store_url.startswith("postgres"):
                from storage.pg import redacted

                where = redacted(store_url)
            print(f"database at schema version {asyncio.run(migrate())} in {where}")
    except (StorageError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
