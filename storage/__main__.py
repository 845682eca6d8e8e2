"""`python -m storage bench` prints the queue's speed as one JSON object; `migrate` prepares DATA_DIR."""

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
    sub.add_parser("migrate", help="create or upgrade the database in DATA_DIR")
    sub.add_parser("health", help="exit 0 if the database opens at this version and DATA_DIR is writable")
    args = parser.parse_args(argv)
    try:
        if args.command == "bench":
            from storage.bench import main as run_bench

            print(json.dumps(run_bench(args.jobs)))
        elif args.command == "health":
            settings = load_settings()

            async def health() -> None:
                store = await Storage.open(settings.data_dir, blob_url=settings.blob_url)
                try:
                    await store.db.fetchone("SELECT count(*) FROM jobs")
                    store.files.write_atomic(store.files.root / "tmp" / "health", b"ok")
                finally:
                    await store.close()

            asyncio.run(health())
            print("ok")
        else:
            settings = load_settings()

            async def migrate() -> int:
                store = await Storage.open(settings.data_dir, blob_url=settings.blob_url)
                version = await store.db.version()
                await store.close()
                return version

            print(f"database at schema version {asyncio.run(migrate())} in {settings.data_dir}")
    except (StorageError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
