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
        "draw caption not escaped", "bot/delivery/results.py",
        'prompt=escape(clip(prompt, room))',
        'prompt=__import__("bot.formatting").formatting.Markup(clip(prompt, room))',
        ("tests/bot/test_escaping.py::test_a_prompt_with_markup_characters_is_shown_as_typed_in_the_caption",),
    ),
    Mutation(
        "failure reason not escaped", "bot/texts.py",
        'return escape(code) if code else self("unknown_reason")',
        'return Markup(code) if code else self("unknown_reason")',
        ("tests/bot/test_escaping.py::test_a_failure_reason_with_markup_characters_reaches_the_user_as_text",),
    ),
    Mutation(
        "again/variation buttons not checked", "bot/handlers/drawing.py",
        "    if job.model_id not in usable:\n", "    if False:\n",
        ("tests/bot/test_buttons.py::test_again_in_a_group_stops_working_when_the_model_is_no_longer_shared_there",),
    ),
    Mutation(
        "update marked handled before its effect", "bot/polling.py",
        "        try:\n            await self.dp.feed_update(self.bot, update)",
        "        await self._mark(update_id)\n        try:\n            await self.dp.feed_update(self.bot, update)",
        ("tests/bot/test_restart.py::test_a_bot_killed_inside_a_handler_handles_that_update_after_its_restart",),
    ),
    Mutation(
        "delivery records ignored", "bot/delivery/outbox.py",
        'done = list(saved.data.get("steps", [])) if saved else []', "done = []",
        ("tests/bot/test_restart.py::test_a_bot_killed_in_the_middle_of_a_delivery_sends_the_rest_and_repeats_nothing",),
    ),
    Mutation(
        "a cancelled training leaves its model behind", "storage/lifecycle/steps.py",
        "            await self._model_deleted(conn, model.id)\n            gone.append(model.id)\n",
        "            pass\n",
        ("tests/storage/test_lifecycle.py::test_a_training_cancelled_while_its_engine_was_dead_leaves_no_model",
         "tests/bot/test_training.py::test_one_training_at_a_time_and_cancel_frees_the_slot"),
    ),
    Mutation(
        "report card never sent", "bot/delivery/results.py",
        '            if card is not None:\n                key = "report_card_warning"',
        '            if False:\n                key = "report_card_warning"',
        ("tests/bot/test_training.py::test_training_reports_queue_position_progress_and_delivers_samples",),
    ),
    Mutation(
        "claim takes a job another worker holds", "storage/lifecycle/engines.py",
        "WHERE (status = 'queued' OR (status = 'running' AND id IN ({abandoned}))){kind_filter}",
        "WHERE (status = 'queued' OR (status = 'running' AND lease_expires_at > 0)){kind_filter}",
        ("tests/storage/test_queue.py::test_jobs_claimed_by_several_processes_are_each_completed_exactly_once",),
        "what a non-atomic pick-then-take does under a race: one job handed to two workers",
    ),
    Mutation(
        "expired leases never reclaimed", "storage/lifecycle/engines.py",
        "WHERE (status = 'queued' OR (status = 'running' AND id IN ({abandoned}))){kind_filter}",
        "WHERE (status = 'queued' OR (status = 'running' AND id IN ({abandoned}) AND 0)){kind_filter}",
        ("tests/storage/test_queue.py::test_an_expired_lease_is_resumed_by_another_worker_with_the_attempt_counted",
         "tests/storage/test_queue.py::test_a_job_whose_worker_was_killed_is_claimed_again_and_fails_clearly_past_its_attempts"),
    ),
    # --- security (issue 12) ---
    Mutation(
        "texts stop escaping values", "bot/texts.py",
        "return escape(value) if isinstance(value, str) else value",
        "return value",
        ("tests/bot/test_escaping.py::test_texts_escape_every_value_unless_it_is_marked_as_markup",),
    ),
    Mutation(
        "refusals repeat links the user typed", "bot/formatting.py",
        "return _ECHO_SAFE.fullmatch(value) is not None", "return True",
        ("tests/bot/test_escaping.py::test_a_link_typed_as_an_option_in_a_group_is_never_posted_as_a_link",
         "tests/bot/test_escaping.py::test_a_refusal_never_repeats_a_link_a_mention_or_a_command_the_user_typed"),
    ),
    Mutation(
        "one user's backlog fills the window", "bot/polling.py",
        "if self._in_lane[lane] >= self.tuning.max_updates_per_lane or lane in parking",
        "if False and self._in_lane[lane] >= self.tuning.max_updates_per_lane or lane in parking",
        ("tests/bot/test_flood.py::test_one_users_backlog_never_fills_the_window_everyone_shares",),
    ),
    Mutation(
        "settings take any value a button sends", "bot/handlers/settings.py",
        "if callback_data.value not in allowed:", "if False:",
        ("tests/bot/test_settings.py::test_forged_or_stale_settings_values_are_refused",),
    ),
    Mutation(
        "upscale takes any picture index", "bot/handlers/pictures.py",
        "if job is None or not 0 <= callback_data.index < len(job.result.images):",
        "if job is None:",
        ("tests/bot/test_pictures.py::test_upscale_refuses_a_forged_index_and_counts_against_pending_draws",),
    ),
    Mutation(
        "draw ignores the user's settings", "bot/services/drawing.py",
        "    options = preferred_options(prefs, default_steps, info)\n",
        "    options = preferred_options(None, default_steps, info)\n",
        ("tests/bot/test_settings.py::test_settings_survive_a_restart_and_shape_draw_and_its_buttons",),
    ),
    Mutation(
        "again/variation buttons ignore the chat the drawing was asked in", "bot/handlers/drawing.py",
        ' or job.chat_id != message.chat.id:', ":",
        ("tests/bot/test_buttons.py::test_a_private_drawing_cannot_be_replayed_into_a_group_where_its_model_is_shared",),
    ),
    Mutation(
        "model buttons work outside the owner's private chat", "bot/handlers/models.py",
        "if not isinstance(message, Message) or message.chat.id != query.from_user.id:",
        "if not isinstance(message, Message):",
        ("tests/bot/test_buttons.py::test_model_share_page_and_forget_buttons_act_only_for_the_owner_in_the_private_chat",),
    ),
    Mutation(
        "model buttons work for anyone", "bot/handlers/models.py",
        ' or model.owner_id != query.from_user.id:', ":",
        ("tests/bot/test_buttons.py::test_model_share_page_and_forget_buttons_act_only_for_the_owner_in_the_private_chat"
         "[0-another user in their own chat]",
         "tests/bot/test_buttons.py::test_model_share_page_and_forget_buttons_act_only_for_the_owner_in_the_private_chat"
         "[6-another user in their own chat]"),
    ),
    Mutation(
        "pending drawings unbounded", "storage/lifecycle/users.py",
        "if await self._unfinished(conn, owner_id, JobKind.DRAW) >= limit:", "if False:",
        ("tests/bot/test_fair_use.py::test_a_flood_of_again_presses_queues_at_most_the_limit",
         "tests/bot/test_fair_use.py::test_draws_in_captions_go_through_the_same_limit",
         "tests/storage/test_queue.py::test_pending_work_is_bounded_per_user_at_enqueue"),
    ),
    Mutation(
        "one reply per refused drawing", "bot/services/drawing.py",
        "first = now - self._told.get(user_id, -BURST_S) >= BURST_S", "first = True",
        ("tests/bot/test_fair_use.py::test_a_flood_of_draw_commands_queues_at_most_the_limit_with_one_polite_reply",),
    ),
    Mutation(
        "claims first come first served", "storage/lifecycle/engines.py",
        "ORDER BY priority DESC, {FAIR_TURN}, id LIMIT 1{self._db.skip_locked})",
        "ORDER BY priority DESC, id LIMIT 1{self._db.skip_locked})",
        ("tests/storage/test_queue.py::test_users_take_turns_so_a_backlog_delays_another_user_by_at_most_one_job",
         "tests/bot/test_fair_use.py::test_one_users_backlog_delays_anothers_drawing_by_at_most_one_job"),
    ),
    Mutation(
        "cancelled trainings not counted", "storage/queue.py",
        "AND status != 'failed' AND NOT (status = 'cancelled' AND started_at IS NULL)",
        "AND status NOT IN ('failed', 'cancelled')",
        ("tests/bot/test_fair_use.py::test_cancelled_trainings_count_against_the_daily_cap",),
    ),
    Mutation(
        "engine failures counted against the cap", "storage/queue.py",
        "AND status != 'failed' AND NOT (status", "AND NOT (status",
        ("tests/bot/test_fair_use.py::test_engine_failures_do_not_count_against_the_daily_cap",),
    ),
    Mutation(
        "invented class words unlimited", "bot/services/training.py",
        "if not again and await self.store.models.invented_words_used(user_id, own) >= NEW_CLASS_WORDS:",
        "if False:",
        ("tests/bot/test_fair_use.py::test_invented_class_words_are_limited_and_common_ones_are_not",),
    ),
    Mutation(
        "a deleted model can come back", "storage/lifecycle/steps.py",
        "if model is None or model.status == ModelStatus.DELETED:\n            return False",
        "if model is None:\n            return False",
        ("tests/storage/test_retention.py::test_a_deleted_model_stays_deleted_whatever_a_worker_still_reports",
         "tests/bot/test_privacy.py::test_a_model_deleted_while_it_draws_its_samples_stays_deleted"),
    ),
    Mutation(
        "delete keeps checkpoints and drawn pictures", "storage/lifecycle/steps.py",
        '                await self._blobs.delete_prefix(job_prefix(row["id"]))', "                pass",
        ("tests/storage/test_retention.py::test_deleting_a_model_removes_its_files_and_every_picture_drawn_with_it_at_once",),
    ),
    Mutation(
        "sweep spares what a worker wrote after a delete", "storage/retention.py",
        'if status is None or status == "deleted":', "if status is None:",
        ("tests/storage/test_retention.py::test_the_sweep_removes_what_a_worker_wrote_after_a_delete",
         "tests/bot/test_privacy.py::test_a_model_deleted_while_it_draws_its_samples_stays_deleted"),
    ),
    Mutation(
        "finished models keep copies of the photos", "storage/retention.py",
        'elif status in {"ready", "failed"} and', "elif False and",
        ("tests/bot/test_privacy.py::test_clear_removes_the_photo_files_including_the_copies_a_finished_model_held",),
    ),
    Mutation(
        "finished trainings keep their checkpoints", "storage/retention.py",
        '                or (finished and job["kind"] == "train")\n', "",
        ("tests/storage/test_retention.py::test_a_finished_model_keeps_neither_its_training_checkpoints_nor_its_copies_of_the_photos",
         "tests/bot/test_privacy.py::test_deleting_a_model_removes_its_weights_checkpoints_samples_and_every_picture_drawn_with_it"),
    ),
    Mutation(
        "drawn pictures kept forever", "storage/retention.py",
        '                or (finished and (job["finished_at"] or 0) < now - self.retention_s)\n', "",
        ("tests/storage/test_retention.py::test_pictures_and_records_are_kept_for_the_retention_time_and_then_go",),
    ),
    Mutation(
        "forgetme leaves the photo files", "storage/retention.py",
        "        await self._blobs.delete_prefix(user_photos_prefix(user_id))\n", "",
        ("tests/bot/test_privacy.py::test_forgetme_deletes_everything_of_the_user_and_nothing_of_anyone_else",),
    ),
    Mutation(
        "shares outlive the bot's removal from a group", "bot/handlers/groups.py",
        "ended = await store.lifecycle.end_chat(event.chat.id)", "ended = []",
        ("tests/bot/test_sharing.py::test_a_bot_removed_from_a_group_ends_its_shares_there_for_good_and_tells_the_owners",),
    ),
    Mutation(
        "a migrated group loses its shares", "bot/handlers/groups.py",
        "moved = await store.lifecycle.move_chat(old, new)", "moved = 0",
        ("tests/bot/test_sharing.py::test_a_group_that_becomes_a_supergroup_keeps_its_shares",),
    ),
    Mutation(
        "group stop button stops nothing", "bot/handlers/models.py",
        "    await store.lifecycle.end_share(model.id, chat.id)\n", "",
        ("tests/bot/test_sharing.py::test_models_shows_where_a_model_is_shared_and_stops_a_group_share_from_the_private_chat",),
    ),
    Mutation(
        "group lists not fitted to Telegram's limit", "bot/handlers/groups.py",
        "LINES_CHARS = 3500", "LINES_CHARS = 35000",
        ("tests/bot/test_sharing.py::test_group_replies_listing_models_stay_under_telegrams_limits_whatever_the_count",),
    ),
    Mutation(
        "/models shows only the first page", "bot/handlers/models.py",
        "    if pages > 1:\n", "    if False:\n",
        ("tests/bot/test_sharing.py::test_models_pages_through_every_model",),
    ),
    Mutation(
        "HEIC opener not registered", "engine/photos.py",
        "pillow_heif.register_heif_opener()\n", "\n",
        ("tests/bot/test_photos.py::test_an_iphone_photo_sent_as_a_heic_file_is_accepted",),
    ),
    Mutation(
        "unsupported formats called damaged", "engine/photos.py",
        "if _looks_like_another_image_format(data):", "if False:",
        ("tests/bot/test_photos.py::test_a_picture_format_we_cannot_read_is_refused_as_unsupported_not_damaged",),
    ),
    Mutation(
        "progressive JPEG scans unbounded", "engine/photos.py",
        "(scans := jpeg_scan_count(data)) > MAX_JPEG_SCANS", "(scans := 0) > MAX_JPEG_SCANS",
        ("tests/engine/test_photos.py::test_a_progressive_jpeg_repeating_one_scan_thousands_of_times_is_refused_before_decoding",),
    ),
    Mutation(
        "every format Pillow knows is decoded", "engine/photos.py",
        "formats=ALLOWED_FORMATS)", "formats=None)",
        ("tests/engine/test_photos.py::test_picture_formats_outside_the_allow_list_are_never_decoded",),
    ),
    Mutation(
        "download trusts the declared size", "bot/services/downloads.py",
        "            if len(received) > limit:\n", "            if False:\n",
        ("tests/bot/test_photos.py::test_a_download_is_capped_by_the_bytes_received_not_the_size_declared",),
    ),
    Mutation(
        "VAE scaling factor dropped", "engine/objectives.py",
        "latents = ((batch.latents - (vae.shift_factor or 0.0)) * vae.scaling_factor).to(device)",
        "latents = (batch.latents - (vae.shift_factor or 0.0)).to(device)",
        ("tests/engine/test_training_mechanics.py::test_the_unet_learns_on_latents_at_the_vaes_scale",),
    ),
    Mutation(
        "timesteps drawn only from the high end", "engine/objectives.py",
        "ts = torch.randint(0, timesteps, (latents.shape[0],), generator=gen)",
        "ts = torch.randint(timesteps // 2, timesteps, (latents.shape[0],), generator=gen)",
        ("tests/engine/test_training_mechanics.py::test_training_timesteps_cover_the_whole_schedule_evenly",),
    ),
    Mutation(
        "gradient clipping removed", "engine/train_steps.py",
        "                loss.backward()\n                torch.nn.utils.clip_grad_norm_(self.params, 1.0)\n",
        "                loss.backward()\n",
        ("tests/engine/test_training_mechanics.py::test_gradients_are_clipped_to_norm_one_whatever_the_loss",),
    ),
    Mutation(
        "resume ignores the checkpoint's signature", "engine/training.py",
        "if ckpt is not None and ckpt.signature == signature:", "if ckpt is not None:",
        ("tests/engine/test_training_mechanics.py::test_a_checkpoint_of_other_photos_is_not_resumed",),
    ),
    Mutation(
        "LoRA cache ignores that its file changed", "engine/drawing.py",
        "key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)", "key = (str(path.resolve()), 0, 0)",
        ("tests/engine/test_training_mechanics.py::test_a_retrained_lora_file_is_read_again_not_served_from_the_cache",),
    ),
    Mutation(
        "LoRA cache never evicts", "engine/drawing.py",
        "while len(self._adapters) > self.cache_size:", "while False:",
        ("tests/engine/test_training_mechanics.py::test_the_lora_cache_holds_at_most_its_size",),
    ),
    # --- issue 11: faults ----------------------------------------------------------------------------------------
    Mutation(
        "a failed getUpdates stops polling", "bot/polling.py",
        "                except Exception as exc:\n                    failures += 1",
        "                except TelegramServerError as exc:\n                    failures += 1",
        ("tests/bot/test_faults.py::test_error_pages_and_api_errors_on_get_updates_never_stop_the_bot",),
    ),
    Mutation(
        "an unreadable update blocks the queue", "bot/polling.py",
        "                # One update nobody can read must not block everyone behind it: skip it, say which.\n",
        "                raise\n",
        ("tests/bot/test_faults.py::test_an_update_aiogram_cannot_read_is_skipped_and_everyone_after_it_is_answered",),
    ),
    Mutation(
        "the offset moves past unfinished updates", "bot/polling.py",
        "        if waiting:\n            return min(waiting)",
        "        if False:\n            return min(waiting)",
        ("tests/bot/test_faults.py::test_a_user_waiting_on_a_slow_download_delays_nobody_else_and_keeps_their_own_order",
         "tests/bot/test_restart.py::test_a_bot_killed_inside_a_handler_handles_that_update_after_its_restart"),
    ),
    Mutation(
        "updates handled one at a time", "bot/polling.py",
        "        self._in_lane[lane] += 1\n        self._lanes.submit(lane, partial(self._handle, update_id, update))",
        "        self._in_lane[lane] += 1\n        self._lanes.submit(0, partial(self._handle, update_id, update))",
        ("tests/bot/test_faults.py::test_a_user_waiting_on_a_slow_download_delays_nobody_else_and_keeps_their_own_order",),
    ),
    Mutation(
        "slow updates hold the offset", "bot/polling.py",
        "                await self._keep_slow()\n", "",
        ("tests/bot/test_restart.py::test_an_update_slow_to_finish_is_kept_so_the_offset_moves_on_and_a_restart_still_handles_it",),
    ),
    Mutation(
        "kept updates forgotten at a restart", "bot/polling.py",
        "            kept = await self.store.updates.kept()", "            kept = []",
        ("tests/bot/test_restart.py::test_an_update_slow_to_finish_is_kept_so_the_offset_moves_on_and_a_restart_still_handles_it",),
    ),
    Mutation(
        "a result refused with 5xx is not sent again", "bot/delivery/outbox.py",
        "                transient = _transient(exc)\n", "                transient = False\n",
        ("tests/bot/test_faults.py::test_a_result_refused_with_5xx_is_sent_again_until_it_arrives_and_drawing_goes_only_after",),
    ),
    Mutation(
        "a user who blocked the bot is retried", "bot/delivery/outbox.py",
        "TelegramEntityTooLarge | TelegramForbiddenError | TelegramBadRequest", "TelegramEntityTooLarge | TelegramBadRequest",
        ("tests/bot/test_faults.py::test_a_user_who_blocked_the_bot_costs_one_attempt_and_the_result_is_recorded_undeliverable",),
    ),
    Mutation(
        "the feed cursor passes undelivered results", "bot/delivery/follower.py",
        "            low = min(self._pending) - 1 if self._pending else self._read",
        "            low = self._read",
        ("tests/bot/test_restart.py::test_a_result_the_bot_api_kept_refusing_is_delivered_by_the_next_start",),
    ),
    Mutation(
        "'Drawing…' deleted before the result", "bot/delivery/results.py",
        '        reply = _reply(request)\n        if job.status == "done"',
        '        reply = _reply(request)\n        first = await self.outbox.status_message(job.id)\n'
        '        if first is not None:\n'
        '            await steps.run("status", lambda: self._delete(chat_id, first))\n'
        '        if job.status == "done"',
        ("tests/bot/test_faults.py::test_a_result_refused_with_5xx_is_sent_again_until_it_arrives_and_drawing_goes_only_after",),
    ),
    Mutation(
        "one serial consumer of the feed", "bot/delivery/follower.py",
        "self._lanes.submit(job.chat_id, partial(self._in_lane, event))",
        "self._lanes.submit(0, partial(self._in_lane, event))",
        ("tests/bot/test_faults.py::test_a_chat_under_flood_control_delays_nobody_elses_result",),
    ),
    Mutation(
        "two bots both lead", "storage/leases.py",
        'if row is not None and row["holder"] not in (None, holder) and not self._free(row, now):',
        "if False:",
        ("tests/bot/test_restart.py::test_two_bots_on_one_database_deliver_each_result_once_and_the_standby_takes_over",
         "tests/storage/test_leases.py::test_one_holder_at_a_time_and_a_release_frees_the_lease_at_once"),
    ),
    Mutation(
        "a dead leader's lease is waited out", "storage/leases.py",
        'if owner_gone(str(row["holder"]).partition("@")[0]) is True:', "if False:",
        ("tests/storage/test_leases.py::test_a_holder_that_died_on_this_machine_is_replaced_at_once",),
    ),
    Mutation(
        "an expired-looking lease taken at first sight", "storage/leases.py",
        "            self._seen[key] = (identity, now)\n            return False",
        "            self._seen[key] = (identity, now)\n            return True",
        ("tests/storage/test_queue.py::test_a_forward_jump_of_the_wall_clock_lets_nobody_take_a_healthy_job",
         "tests/storage/test_queue.py::test_a_forward_jump_of_the_wall_clock_never_fails_a_job_on_its_last_attempt",
         "tests/storage/test_leases.py::test_a_wall_clock_jump_takes_no_lease_from_a_holder_that_keeps_renewing"),
    ),
    Mutation(
        "a starting process sweeps live writers' temp files", "storage/files.py",
        "    if gone is not None:\n        return gone", "    if gone is not None:\n        return True",
        ("tests/storage/test_files.py::test_a_starting_process_never_removes_the_temp_file_of_a_live_writer",),
    ),
    Mutation(
        "abandoned temp folders never swept", "storage/files.py",
        "            if leftover.is_dir() and not leftover.is_symlink():\n                shutil.rmtree(leftover)",
        "            if leftover.is_dir():\n                continue",
        ("tests/storage/test_files.py::test_temp_files_and_folders_of_killed_writers_are_swept_at_start",),
    ),
    Mutation(
        "a full disk is an ordinary OSError", "storage/files.py",
        "    if isinstance(exc, StorageUnavailable):\n        return exc\n    reason = _UNAVAILABLE_ERRNOS",
        "    return None\n    reason = _UNAVAILABLE_ERRNOS",
        ("tests/storage/test_files.py::test_a_full_disk_is_storage_unavailable_and_leaves_the_old_file_and_no_temp",
         "tests/engine/test_worker.py::test_a_full_disk_fails_the_draw_with_a_clear_message_and_the_worker_serves_the_next"),
    ),
    Mutation(
        "a full database is an ordinary sqlite error", "storage/db.py",
        '    """The StorageUnavailable an sqlite3 error really is (disk full, read-only, I/O), or None."""\n',
        '    """The StorageUnavailable an sqlite3 error really is (disk full, read-only, I/O), or None."""\n'
        "    return None\n",
        ("tests/storage/test_full_disk.py::test_a_full_disk_refuses_database_writes_clearly_and_they_work_again_when_space_returns",
         "tests/bot/test_full_disk.py::test_a_full_disk_gets_one_polite_reply_per_update_and_the_bot_recovers_by_itself"),
    ),
    Mutation(
        "a rollback after SQLite's own hides the full disk", "storage/db.py",
        "        with contextlib.suppress(asyncio.CancelledError, sqlite3.Error):\n            await asyncio.shield(rollback)",
        "        with contextlib.suppress(asyncio.CancelledError):\n            await asyncio.shield(rollback)",
        ("tests/storage/test_full_disk.py::test_a_full_disk_refuses_database_writes_clearly_and_they_work_again_when_space_returns",),
        "SQLite rolls a transaction back itself on SQLITE_FULL; a second ROLLBACK fails and hides why",
    ),
    Mutation(
        "nothing-can-be-saved answered as a crash", "bot/handlers/errors.py",
        '        key = "cant_save"', '        key = "error_generic"',
        ("tests/bot/test_full_disk.py::test_a_full_disk_gets_one_polite_reply_per_update_and_the_bot_recovers_by_itself",),
    ),
    Mutation(
        "the operator's no-space line on every failure", "storage/logs.py",
        "    if last is not None and now - last < TROUBLE_EVERY_S:", "    if False:",
        ("tests/bot/test_full_disk.py::test_a_full_disk_gets_one_polite_reply_per_update_and_the_bot_recovers_by_itself",
         "tests/engine/test_worker.py::test_a_full_disk_fails_the_draw_with_a_clear_message_and_the_worker_serves_the_next"),
    ),
    Mutation(
        "album summaries owed only in memory", "bot/services/photos.py",
        "        for key in await self.store.albums.waiting():", "        for key in []:",
        ("tests/bot/test_restart.py::test_a_bot_killed_before_it_acknowledged_an_album_sends_the_summary_after_its_restart",),
    ),
    Mutation(
        "only the raw token redacted", "storage/logs.py",
        '    forms = {secret, quote(secret, safe=""), quote(secret)}\n    if ":" in secret:\n'
        '        forms.add(secret.split(":", 1)[1])',
        "    forms = {secret}",
        ("tests/bot/test_errors.py::test_the_token_never_appears_in_the_bot_process_output_even_when_error_pages_echo_it",),
    ),
    Mutation(
        "uncaught exceptions bypass the redacting logger", "storage/logs.py",
        "    sys.excepthook = uncaught\n", "",
        ("tests/storage/test_logs.py::test_every_way_out_of_a_process_goes_through_the_redacting_log_line",),
    ),
    Mutation(
        "a refused token is a traceback", "bot/app.py",
        "        except TelegramUnauthorizedError:\n            raise InvalidToken(",
        "        except ZeroDivisionError:\n            raise InvalidToken(",
        ("tests/bot/test_errors.py::test_a_refused_token_at_start_is_one_clear_line_and_a_non_zero_exit",),
    ),
    Mutation(
        "a read-only DATA_DIR at start crashes the bot", "bot/app.py",
        "            return await Storage.open(settings.data_dir, database_url=settings.database_url, blob_url=settings.blob_url)\n        except StorageUnavailable as exc:",
        "            return await Storage.open(settings.data_dir, database_url=settings.database_url, blob_url=settings.blob_url)\n        except ZeroDivisionError as exc:",
        ("tests/bot/test_full_disk.py::test_a_read_only_data_dir_at_start_is_one_clear_line_and_the_bot_comes_up_once_it_is_writable",),
    ),
    Mutation(
        "a broken cached class image is trusted", "engine/class_images.py",
        "existing = [p for p in existing_class_images(folder) if _decodes(p)]",
        "existing = list(existing_class_images(folder))",
        ("tests/engine/test_class_images.py::test_a_cached_class_image_that_does_not_decode_is_drawn_again",),
    ),
    Mutation(
        "the engine calls a full disk an internal error", "engine/worker.py",
        "        if isinstance(exc, StorageUnavailable):\n            report_storage_trouble(exc, log)\n            return failure(\"no_room\")",
        "        if False:\n            return failure(\"no_room\")",
        ("tests/engine/test_worker.py::test_a_full_disk_fails_the_draw_with_a_clear_message_and_the_worker_serves_the_next",),
    ),
    Mutation(
        "PostgreSQL write transactions do not take turns", "storage/pg.py",
        '                await raw.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))\n',
        "                pass\n",
        ("tests/storage/test_postgres.py::test_concurrent_writers_and_a_follower_restarted_from_its_cursor_see_every_event_exactly_once",),
        "caught only with KABINA_TEST_DATABASE_URL set (.ci/run sets it when PostgreSQL answers)",
    ),

    Mutation(
        "concurrent asks of one blob download it once each", "engine/blob_cache.py",
        "        async with lock:\n", "        if lock:\n",
        ("tests/engine/test_blob_cache.py::test_a_blob_is_downloaded_once_however_many_ask_at_the_same_time",),
    ),
    Mutation(
        "the blob cache evicts a copy in use", "engine/blob_cache.py",
        "            if self._in_use.get(key) or len(self._entries) == 1:", "            if len(self._entries) == 1:",
        ("tests/engine/test_blob_cache.py::test_a_full_cache_evicts_the_least_recently_used_copy_not_in_use",),
    ),
    Mutation(
        "a changed blob is served from the old copy", "engine/blob_cache.py",
        "(version is None or entry[1] == version)", "True",
        ("tests/engine/test_blob_cache.py::test_a_changed_blob_is_fetched_again",),
    ),
    Mutation(
        "old installs keep absolute paths in their rows", "storage/__init__.py",
        "            await convert_old_paths(db, files.root)\n", "            pass\n",
        ("tests/storage/test_keys.py::test_a_database_written_with_absolute_paths_reads_as_keys_after_reopening",),
    ),
    Mutation(
        "migrate writes beside the source database", "storage/transfer.py",
        "?mode=ro&immutable=1", "?mode=ro",
        ("tests/storage/test_transfer.py::test_an_install_moves_whole_and_the_source_is_left_untouched",),
        "a read-only WAL connection still creates -shm/-wal files in the install it copies",
    ),
    Mutation(
        "migrated ids restart at 1 on PostgreSQL", "storage/transfer.py",
        'if name in sequenced and rows and target.dialect == "postgresql":', "if False:",
        ("tests/storage/test_transfer.py::test_an_install_moves_whole_and_the_source_is_left_untouched",),
        "caught on the [postgres] case only (KABINA_TEST_DATABASE_URL set)",
    ),
    Mutation(
        "compiled LoRA strength set as a float", "engine/compiled_denoiser.py",
        "                value.fill_(scale * strength)  # in place: the compiled graph reads the tensor, nothing recompiles",
        "                layer.scaling[SLOT] = scale * strength",
        ("tests/engine/test_compiled_drawing.py::test_switching_loras_strengths_and_the_base_model_never_recompiles",),
        "a Python float scale is a constant the compiled graph specialises on: each new strength recompiles",
    ),
    Mutation(
        "an eagerly drawn LoRA stays beside the compiled slot", "engine/drawing.py",
        "        self.pipe.delete_adapters(list(self._adapters.values()))\n        self._adapters.clear()\n",
        "        pass\n",
        ("tests/engine/test_compiled_drawing.py::test_switching_loras_strengths_and_the_base_model_never_recompiles",),
    ),
    Mutation(
        "output preservation's frozen pass keeps the LoRA on", "engine/train_steps.py",
        "        layer._disable_adapters = True\n", "        pass\n",
        ("tests/engine/test_time_to_model.py::test_output_preservation_holds_the_class_prompt_to_the_frozen_base_prediction",
         "tests/engine/test_output_prior_families.py::"
         "test_the_class_row_is_held_to_the_base_models_prediction_with_the_lora_off"),
    ),
    Mutation(
        "the cache sweep may take a training's unpublished files", "engine/jobs/train.py",
        "    with ctx.cache.working(prefix, ckpt_prefix, class_prefix, before_prefix):",
        "    with ctx.cache.working(ckpt_prefix):",
        ("tests/engine/test_worker.py::test_a_cache_sweep_between_a_trainings_publishes_leaves_its_files_be",),
    ),
    Mutation(
        "a model deleted as its training begins fails as an engine error", "engine/jobs/train.py",
        "    except NotFound:  # deleted since it was read above", "    except KeyError:",
        ("tests/engine/test_worker.py::"
         "test_a_model_deleted_just_before_its_training_begins_fails_as_gone_not_as_an_engine_error",),
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
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "-x", f"--timeout={timeout_s}",
                 f"--junitxml={report}", *mutation.tests],
                cwd=tree, capture_output=True, text=True, timeout=timeout_s * (len(mutation.tests) + 2),
            )
        except subprocess.TimeoutExpired as exc:
            # pytest did not exit (something the mutant left running): judge by the report it wrote, if any.
            done = subprocess.CompletedProcess(exc.cmd, 1 if report.is_file() else -9, str(exc.stdout or ""), "")
        seconds = round(time.monotonic() - started, 1)
        failures = _failures(report)
    if done.returncode in (2, 3, 4, 5):  # interrupted, internal error, usage error, no tests: nothing was judged
        raise SystemExit(f"{mutation.name}: pytest could not run the tests (exit {done.returncode}):\n"
                         f"{(done.stdout + done.stderr)[-1500:]}")
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
