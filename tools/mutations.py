"""Break the code on purpose, one behaviour at a time, and check that the suite notices by an assertion.

    python tools/mutations.py            # every mutation, each against the tests that claim to guard it
    python tools/mutations.py --list     # the table of mutations without running anything
    python tools/mutations.py NAME ...   # only these

Each mutation is a text replacement in one production file, applied to a throw-away copy of this checkout;
the tests named beside it run there. A mutation counts as caught only when a test fails by an assertion or an
exception of the code under test — a test that merely runs into its timeout does not count, since a slow
failure is indistinguishable from a slow machine. Prints one JSON line per mutation, then a summary table;
exits 1 if any mutation survived.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    why: str = ""


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "draw caption not escaped", "bot/delivery.py",
        'prompt=html.escape(clip(prompt, room))', 'prompt=clip(prompt, room)',
        ("tests/bot/test_escaping.py::test_a_prompt_with_markup_characters_is_shown_as_typed_in_the_caption",),
    ),
    Mutation(
        "failure reason not escaped", "bot/delivery.py",
        'text = t("draw_failed", reason=html.escape(job.error or t("unknown_reason")))',
        'text = t("draw_failed", reason=job.error or t("unknown_reason"))',
        ("tests/bot/test_escaping.py::test_a_failure_reason_with_markup_characters_reaches_the_user_as_text",),
    ),
    Mutation(
        "again/variation buttons not checked", "bot/handlers/drawing.py",
        "    if job.model_id not in usable:\n", "    if False:\n",
        ("tests/bot/test_buttons.py",),
    ),
    Mutation(
        "update marked handled before its effect", "bot/polling.py",
        "                try:\n                    await dp.feed_update(bot, update)",
        "                await store.updates.mark(update.update_id)\n"
        "                try:\n                    await dp.feed_update(bot, update)",
        ("tests/bot/test_restart.py::test_a_bot_killed_inside_a_handler_handles_that_update_after_its_restart",),
    ),
    Mutation(
        "delivery records ignored", "bot/delivery.py",
        'done = list(saved.data.get("steps", [])) if saved else []', "done = []",
        ("tests/bot/test_restart.py::test_a_bot_killed_in_the_middle_of_a_delivery_sends_the_rest_and_repeats_nothing",),
    ),
    Mutation(
        "cancel deletes a ready model", "bot/delivery.py",
        'if model is not None and model.status != "ready":', "if model is not None:",
        ("tests/bot/test_training.py::test_a_cancel_that_comes_after_the_model_is_ready_keeps_the_model",),
    ),
    Mutation(
        "report card never sent", "bot/delivery.py",
        '            if card is not None:\n                key = "report_card_warning"',
        '            if False:\n                key = "report_card_warning"',
        ("tests/bot/test_training.py::test_training_reports_queue_position_progress_and_delivers_samples",),
    ),
    Mutation(
        "claim takes a job another worker holds", "storage/queue.py",
        "WHERE (status = 'queued' OR (status = 'running' AND lease_expires_at < ?))",
        "WHERE (status = 'queued' OR (status = 'running' AND lease_expires_at > ? - 5))",
        ("tests/storage/test_queue.py::test_jobs_claimed_by_several_processes_are_each_completed_exactly_once",),
        "what a non-atomic pick-then-take does under a race: one job handed to two workers",
    ),
    Mutation(
        "expired leases never reclaimed", "storage/queue.py",
        "WHERE (status = 'queued' OR (status = 'running' AND lease_expires_at < ?))",
        "WHERE (status = 'queued' OR (status = 'running' AND lease_expires_at < ? AND 0))",
        ("tests/storage/test_queue.py::test_an_expired_lease_is_resumed_by_another_worker_with_the_attempt_counted",
         "tests/storage/test_queue.py::test_a_job_whose_worker_was_killed_is_claimed_again_and_fails_clearly_past_its_attempts"),
    ),
)


def copy_checkout(target: Path) -> None:
    """Tracked files plus untracked ones git does not ignore: what a commit of this working tree would hold."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def apply(mutation: Mutation, tree: Path) -> None:
    path = tree / mutation.file
    text = path.read_text()
    if text.count(mutation.old) != 1:
        raise SystemExit(f"{mutation.name}: the text to mutate occurs {text.count(mutation.old)} times in "
                         f"{mutation.file}; update tools/mutations.py to the code as it is now")
    path.write_text(text.replace(mutation.old, mutation.new))


def run_one(mutation: Mutation, timeout_s: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="kabina-mutant-") as tmp:
        tree = Path(tmp)
        copy_checkout(tree)
        apply(mutation, tree)
        report = tree / "junit.xml"
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", f"--timeout={timeout_s}",
             f"--junitxml={report}", *mutation.tests],
            cwd=tree, capture_output=True, text=True, timeout=timeout_s * (len(mutation.tests) + 2),
        )
        seconds = round(time.monotonic() - started, 1)
        failures = _failures(report)
    by_assertion = [f for f in failures if "Timeout" not in f["message"]]
    return {
        "mutation": mutation.name,
        "caught": done.returncode == 1 and bool(by_assertion),
        "by": by_assertion[0]["test"] if by_assertion else None,
        "how": by_assertion[0]["message"][:160] if by_assertion else (failures[0]["message"][:160] if failures
                                                                      else done.stdout[-300:]),
        "seconds": seconds,
    }


def _failures(report: Path) -> list[dict]:
    if not report.is_file():
        return []
    out = []
    for case in ET.parse(report).getroot().iter("testcase"):
        for failure in list(case.iter("failure")) + list(case.iter("error")):
            out.append({"test": f"{case.get('classname')}::{case.get('name')}",
                        "message": failure.get("message") or ""})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="run only these mutations")
    parser.add_argument("--list", action="store_true", help="print the mutations and their tests, run nothing")
    parser.add_argument("--timeout", type=int, default=180, help="seconds per test before it counts as a timeout")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.file} — guarded by {', '.join(m.tests)}")
        return 0
    results = []
    for mutation in chosen:
        result = run_one(mutation, args.timeout)
        results.append(result)
        print(json.dumps(result), flush=True)
    print("\n| mutation | caught by | how |\n|---|---|---|")
    for r in results:
        print(f"| {r['mutation']} | {r['by'] or 'SURVIVED'} | {r['how'].splitlines()[0] if r['how'] else ''} |")
    return 0 if all(r["caught"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
