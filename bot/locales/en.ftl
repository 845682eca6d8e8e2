help =
    Hi! I'm <b>Kabina</b>. I learn a face, a pet or a thing from a few of your photos,
    then draw it anywhere you describe — in Paris, as an oil painting, in space.
    Everything runs on our own machine; your photos stay with us and only you decide who may use your model.
    
    <b>How to</b>
    1. Send me { $min }–{ $max } photos of one subject (different angles and backgrounds; albums and files are fine).
    2. Send <code>/train dog</code> — the word says what the photos show (dog, cat, woman, man, toy…).
    3. When training is done, just describe a picture: <code>/draw in Paris</code> draws your default model.
    Send a photo with <code>/draw …</code> as its caption (or reply /draw to a picture) to start from that picture.
    
    /photos — your current photo set · /clear — start the set again
    /models — your models: default, rename, share link, export, delete
    /settings — your model, sampler, steps, shape, pictures per draw · /language — English or Russian
    /cancel — stop your queued or running job
    { $options }
    Under each result: 📄 sends the pictures as PNG files, without Telegram's compression.
    In a group: add me, send <code>/share</code> there, then anyone can <code>/draw</code>.
    /forgetme — delete everything I keep about you
help_group =
    I'm <b>Kabina</b>: I draw people, pets and things that my users trained me on.
    Owners: send <code>/share</code> here to let this group use your model, <code>/unshare</code> to stop.
    Everyone: <code>/draw sks dog on the moon</code> with a shared model's word. Training happens in a private chat with me.
cmd_start = what Kabina does
cmd_help = how to use Kabina
cmd_photos = show my photo set
cmd_clear = delete my photo set
cmd_train = train a model: /train dog
cmd_draw = draw: /draw sks dog in Paris
cmd_models = my models
cmd_cancel = cancel my job
cmd_share = share my model with this group
cmd_unshare = stop sharing my model here
photos_saved =
    ✅ Saved { $n } { $n ->
        [one] photo
       *[other] photos
    }.
photos_duplicate =
    ♻️ Skipped { $n } { $n ->
        [one] photo
       *[other] photos
    }: already in your set.
photos_full =
    ⛔ { $n } { $n ->
        [one] photo was
       *[other] photos were
    } not saved: your set is full ({ $max } photos). /clear starts again.
refused_not_image = ⛔ That file is not an image. Send photos, or pictures as files (JPEG, PNG, WebP, HEIC).
refused_too_big = ⛔ That file is larger than { $limit_mb } MB, which Telegram does not let bots download. Send it as a photo instead.
refused_corrupt = ⛔ I could not open that image: the file is damaged.
refused_small = ⛔ That image is too small: at least { $min_side }×{ $min_side } pixels are needed.
refused_huge = ⛔ That image has too many pixels for me (over 40 megapixels). Please send a smaller version.
photos_count = 📸 { $count }/{ $max } photos. Send at least { $min } to train.
photos_count_ready = 📸 { $count }/{ $max } photos — enough to train: <code>/train dog</code> (say what they show).
photos_none = You have no photos yet. Send me { $min } or more photos of one subject.
photos_sheet =
    📸 Your set: { $count } { $count ->
        [one] photo
       *[other] photos
    } (training needs { $min }, the set holds up to { $max }). /clear to start again.
photos_cleared =
    🗑 Removed { $n } { $n ->
        [one] photo
       *[other] photos
    }, files included.
photos_none_to_clear = Your photo set is already empty.
train_usage =
    Tell me what your photos show with one or two plain English words:
    <code>/train dog</code>, <code>/train cat</code>, <code>/train woman</code>, <code>/train teddy bear</code>
train_not_allowed = ⛔ Training is limited to approved users on this bot. Ask its operator to add you.
train_busy = ⏳ You already have a training in progress. Wait for it, or /cancel it.
train_daily_cap =
    ⛔ You have started { $cap } { $cap ->
        [one] training
       *[other] trainings
    } today, the daily limit. Please try again tomorrow.
train_few_photos =
    📸 You have { $have } { $have ->
        [one] photo
       *[other] photos
    }; training needs at least { $need }. Send more photos first.
train_private_only = Training happens in a private chat with me: send me your photos there.
train_queued =
    🚀 Training «{ $name }» on { $photos } { $photos ->
        [one] photo
       *[other] photos
    }. I'll keep the next message up to date.
train_ready_caption = ✨ Samples from your new model «{ $name }» (identifier <code>{ $token }</code>).
train_ready =
    🎉 Your model is ready! Use <code>{ $trigger }</code> in a prompt, for example:
    <code>/draw { $trigger } in Paris</code>
train_failed =
    😔 Training failed: { $reason }
    Your photos are still here; /train to try again.
progress_queued =
    ⏳ Waiting in the queue: { $position } { $position ->
        [one] job
       *[other] jobs
    } ahead of yours.
progress_next = ⏳ Starting soon…
progress_class_images =
    🖼 Preparing reference pictures
    { $bar } { $percent }%
    { $step }/{ $total }{ $eta }
progress_training =
    🏋️ Training
    { $bar } { $percent }%
    step { $step }/{ $total }{ $eta }
progress_samples =
    🎨 Drawing samples
    { $bar } { $percent }%
    { $step }/{ $total }{ $eta }
progress_done = ✅ Training finished (about { $minutes } min).
progress_failed = ❌ Training stopped.
progress_cancelled = 🚫 Training cancelled.
eta_seconds = about { $n } s left
eta_minutes = about { $n } min left
cancel_done =
    🚫 Cancelled { $n } { $n ->
        [one] job
       *[other] jobs
    }.
cancel_nothing = You have nothing queued or running.
draw_usage =
    Describe the picture after /draw, e.g. <code>/draw sks dog in Paris</code>
    { $options }
draw_bad_option = ⛔ { $option } must be between { $low } and { $high }.
draw_unknown_option_unnamed = ⛔ I don't know that option. Options here: { $options }.
draw_unknown_option = ⛔ I don't know the option { $option }. Options here: { $options }.
draw_missing_value = ⛔ { $option } needs a value, e.g. <code>{ $option } 4</code>.
draw_bad_quotes = ⛔ A quote is not closed. Example: <code>--neg "blurry, dark"</code>
draw_negative_too_long = ⛔ The --neg text is too long (at most { $limit } characters, about { $words } words).
draw_prompt_too_long = ⛔ That prompt is too long: the model reads about { $words } words ({ $chars } characters at most). Please shorten it.
draw_no_identifier =
    🤔 Which model? Name one in the prompt, or choose a default in /settings:
    { $choices }
draw_ambiguous =
    🤔 Several models answer to that word here. Use one of:
    { $choices }
draw_two_models = ⛔ One model per picture, please: your prompt names two.
draw_no_models = You have no trained model yet. Send me photos of one subject, then /train — see /help.
draw_model_training = ⏳ Your model is still training. I'll send samples when it's ready.
draw_no_models_group = No model is shared in this group yet. Owners: send <code>/share</code> here.
draw_queued =
    🎨 Queued: { $position } { $position ->
        [one] job
       *[other] jobs
    } ahead of yours.
draw_started = 🎨 Drawing…
draw_started_short = 🎨 Drawing…
draw_caption =
    🎨 { $prompt }
    🌱 { $count ->
        [one] seed
       *[other] seeds
    } { $seeds }{ $note }
draw_prompt_cut =
    { "\u000A" }✂️ the prompt was cut to { $tokens } { $tokens ->
        [one] token
       *[other] tokens
    }
draw_negative_cut =
    { "\u000A" }✂️ the --neg text was cut to what the model reads
draw_more = More like this?
draw_failed = 😔 Drawing failed: { $reason }
draw_cancelled = 🚫 Drawing cancelled.
draw_access_ended = ⛔ This drawing was not delivered: its model is no longer shared with you here.
button_again = 🔁 Again
button_vary = ✨ #{ $k }
button_expired = This button is too old; please send the command again.
button_not_yours = That is not yours to use.
models_none = You have no models yet. Send photos and /train — see /help.
models_header =
    You have { $n } { $n ->
        [one] model
       *[other] models
    }:
model_card =
    <b>{ $name }</b>{ $default }
    class: { $cls } · word: <code>{ $token }</code>
    { $status } · { $date }
model_is_default = { " " }⭐
status_queued = ⏳ queued
status_training = 🏋️ training
status_ready = ✅ ready
status_failed = ❌ failed
status_deleted = 🗑 deleted
button_default = ⭐ Default
button_link = 🔗 Share link
button_export = 📦 Export LoRA
button_delete = 🗑 Delete
button_confirm_delete = 🗑 Yes, delete
button_keep = ↩️ Keep
button_revoke = ⛔ Revoke links
model_default_set = ⭐ Now your default model: it wins when two usable models share a word.
model_link =
    🔗 Anyone who opens this link can draw with «{ $name }» in their chat with me:
    { $link }
    Revoke it any time with the button below.
model_links_revoked =
    Revoked { $n } { $n ->
        [one] link
       *[other] links
    }.
model_no_file = The weights file is not available.
model_export_caption = LoRA weights (kohya/A1111 format). Trigger word: { $token }
model_deleted = 🗑 Model «{ $name }» deleted.
model_deleted_short = Deleted
link_invalid = This share link is invalid or was revoked.
link_own_model = That's your own model — you can already draw with it.
link_redeemed = 🎁 { $owner } shared «{ $name }» with you. Try: <code>/draw { $trigger } in Paris</code>
share_no_models = You have no ready model to share. Train one in a private chat with me.
share_which = Which model? { $choices }
share_unknown = I don't know that model. Yours: { $choices }
share_done =
    🤝 «{ $name }» is now shared with this group. Draw with:
    { $usage }
share_line = • <code>/draw@{ $bot } { $handle } { $cls } …</code> — { $owner }'s { $name }
unshare_done = 🔒 Stopped sharing: { $names }.
unshare_nothing = None of your models is shared here.
unshare_not_owner = ⛔ Only the model's owner can stop sharing it.
rate_limited = 🐢 Slow down a little, please — try again in { $seconds } s.
error_generic = 😔 Something went wrong on my side. Nothing you sent is lost; please try again in a moment.
unknown_reason = an unexpected error
unknown_command = I don't know that command. /help lists what I can do.
not_understood = Send me photos to train on, or /help to see what I can do.
report_card = 📊 Report card: pictures of a plain «{ $name }» before (top) and after (bottom) training, same seeds. Drift { $drift } — the plain «{ $name }» still looks like itself.
report_card_warning = ⚠️ Report card: pictures of a plain «{ $name }» changed a lot after training (drift { $drift }) — any «{ $name }» you draw may now look like yours. Train again with fewer or more varied photos to keep the plain one ordinary.
button_unavailable = This button does not work here. Send the command again.
draw_too_many =
    ⏳ You already have { $n } { $n ->
        [one] drawing
       *[other] drawings
    } waiting. I'll take new ones as soon as one of them is done.
train_new_class_cap =
    ⛔ «{ $word }» is not one of the common class words, and you have already used { $cap ->
        [one] your one own word
       *[other] all { $cap } of your own words
    } ({ $used }).
    Pick a common word for what the photos show: dog, cat, man, woman, child, toy, teddy bear, car, house…
model_shared_in = 🤝 shared in: { $groups }
model_links_open =
    🔗 { $links } open { $links ->
        [one] link
       *[other] links
    } · { $people } { $people ->
        [one] person draws
       *[other] people draw
    } with it through a link
models_page = Page { $page } of { $pages }
button_page_newer = ◀ Newer
button_page_older = Older ▶
button_stop_group = 🚫 Stop in { $title }
button_stop_model_group = 🚫 «{ $name }» in { $title }
model_links_revoked_detail =
    ⛔ «{ $name }»: { $links } share { $links ->
        [one] link
       *[other] links
    } revoked. { $links ->
        [one] It no longer opens
       *[other] They no longer open
    }, and the { $people } { $people ->
        [one] person
       *[other] people
    } who had opened one can no longer draw with it.
    { $groups }
revoke_groups_remain = Group shares are not links and stay as they are: { $groups }. Stop them with the buttons under the model in /models.
revoke_no_groups = It is not shared in any group.
share_already_stopped = It is no longer shared there.
share_stopped_short = Stopped
share_stopped = 🔒 «{ $name }» is no longer shared in «{ $title }»: nobody there can draw with it now.
share_stopped_group = 🔒 { $owner } stopped sharing «{ $name }» in this group.
unshare_private_header =
    Your models are shared in { $n } { $n ->
        [one] group
       *[other] groups
    }. Press one to stop sharing it there:
unshare_private_none = None of your models is shared in a group. (Share links are revoked from /models.)
forget_ask =
    ⚠️ This deletes everything I keep about you: your { $models } { $models ->
        [one] model
       *[other] models
    } with their files and every picture drawn with them, your { $photos } { $photos ->
        [one] photo
       *[other] photos
    }, your pictures and prompts, shares and links. It cannot be undone.
button_forget_confirm = 🗑 Delete everything
forget_kept = Nothing was deleted.
forget_done =
    🗑 Done: { $models } { $models ->
        [one] model
       *[other] models
    } and { $photos } { $photos ->
        [one] photo
       *[other] photos
    } deleted with all their files, and everything else I kept about you. If you write to me again, I start from scratch.
cmd_forgetme = delete everything I keep about you
shares_ended_owner_left = ℹ️ { $names } { $n ->
    [one] is
   *[other] are
} no longer shared here: the owner left the group.
shares_ended_removed =
    👋 I was removed from «{ $title }», so { $n ->
        [one] one of your models is
       *[other] { $n } of your models are
    } no longer shared there: { $names }. If I'm added back, share them again with /share.
list_more = … and { $n } more
refused_unsupported = ⛔ I can't read that picture format. Send it as a photo, or as a JPEG, PNG, WebP or HEIC file.
refused_unavailable = ⛔ I could not fetch that file from Telegram. Please send it again as a photo.
draw_bad_sampler_unnamed = ⛔ { $model } has no such sampler. Choose one of: { $choices }.
draw_bad_sampler = ⛔ { $model } has no sampler «{ $sampler }». Choose one of: { $choices }.
draw_bad_ar = ⛔ --ar { $ar } is not a shape I draw. Choose one of: { $choices }.
draw_no_negative = ⛔ { $model } draws without a negative prompt: leave --neg out and say what you want instead.
button_png = 📄 PNG
draw_png_caption = 📄 Full-quality PNG, as drawn (seed { $seed }).
cant_save = 😔 I can't save that right now, please try again later.
help_draw_options = Options for /draw ({ $model }): { $options }
help_option_n = <code>--n 4</code> pictures (up to { $max })
help_option_steps = <code>--steps { $example }</code> (up to { $max })
help_option_cfg = <code>--cfg { $example }</code> how closely to follow the prompt
help_option_guidance = <code>--cfg { $example }</code> guidance
help_option_seed = <code>--seed 42</code> to draw a picture again
help_option_neg = <code>--neg "blurry"</code> what to leave out
help_option_sampler = <code>--sampler { $example }</code> ({ $choices })
help_option_strength = <code>--strength 0.8</code> how much of your model
help_option_ar = <code>--ar 3:2</code> ({ $choices })
cmd_settings = my drawing settings
cmd_language = choose the language
cmd_stats = admin: queue, engines, failures, disk
cmd_ban = admin: ban a user (id or @username)
cmd_unban = admin: lift a ban
cmd_resetlimit = admin: give a user today's trainings back
draw_hint_english = 💡 The model reads English best: a prompt in English usually draws closer to what you asked.
bot_description = I learn a face, a pet or a thing from a few of your photos, then draw it anywhere you describe. Send photos of one subject to start; /help shows how.
bot_short_description = Teach me a face, a pet or a thing from your photos — I draw it anywhere.
language_choose = 🌐 Choose the language I speak with you:
language_set = 🌐 I'll speak English with you now.
settings_title = ⚙️ <b>Your drawing settings</b> (a flag on one /draw still wins for that draw):
settings_line_model = Model: { $value }
settings_line_sampler = Sampler: { $value }
settings_line_steps = Steps: { $value }
settings_line_ar = Shape: { $value }
settings_line_n = Pictures per draw: { $value }
settings_line_strength = Strength of your model: { $value }
settings_auto = auto ({ $value })
settings_no_model = none yet
settings_choose_model = Choose the model /draw uses when the prompt names none:
settings_choose_sampler = Choose a sampler:
settings_choose_steps = Choose the number of steps:
settings_choose_ar = Choose the shape:
settings_choose_n = Choose how many pictures one /draw makes:
settings_choose_strength = Choose how much of your model goes into a picture:
settings_saved = Saved
settings_reset_done = Back to the defaults
button_settings_model = 🧬 Model
button_settings_sampler = 🎛 Sampler
button_settings_steps = 👣 Steps
button_settings_ar = 🖼 Shape
button_settings_n = 🔢 Pictures
button_settings_strength = 💪 Strength
button_settings_reset = ♻️ Defaults
button_back = ↩️ Back
button_auto = auto
button_rename = ✏️ Rename
rename_ask = ✏️ Send me the new name for «{ $name }» (one line, up to { $max } characters).
rename_done = ✅ «{ $old }» is now «{ $name }».
rename_bad = ⛔ A name is one line of 1 to { $max } characters. Send another name.
refused_too_complex = ⛔ That picture is built in a way I don't decode (a JPEG of too many layers). Send it as an ordinary photo.
admin_only = This command is for the bot's operators only.
admin_usage = Say whom: <code>/{ $command } 12345</code> (a Telegram id) or <code>/{ $command } @username</code>.
admin_unknown_user = I know no user { $who }. Use their numeric Telegram id.
admin_ban_admin = Admins cannot be banned; remove them from ADMIN_IDS first.
admin_banned = User { $user } is banned: they are told once, then ignored. Cancelled { $jobs } of their jobs.
admin_already_banned = User { $user } was already banned. Cancelled { $jobs } of their jobs.
admin_unbanned = User { $user } may use the bot again.
admin_not_banned = User { $user } is not banned.
admin_limit_reset =
    User { $user } may start { $cap } more { $cap ->
        [one] training
       *[other] trainings
    } today: their earlier ones no longer count.
banned = Sorry, this bot no longer serves you.
stats =
    <b>Kabina now</b>
    Users: { $users } (banned: { $banned })
    <b>Queue</b> (kind: waiting · running · oldest wait)
    { $queues }
    Today (UTC): { $trainings } trainings, { $draws } drawings
    Failures in the last 24 h: { $failures }
    Results not yet delivered: { $backlog }
    <b>Engines alive</b>
    { $engines }
    Disk: database { $database }; free { $free } of { $total }
stats_queue_line = { $kind }: { $queued } · { $running } · { $wait }
stats_engine_line = { $worker }: { $title } ({ $family }), seen { $seen } ago, { $busy }
stats_idle = idle
stats_none = none
stats_no_engine = none — nothing will be drawn or trained until an engine starts
help_option_change = <code>--change 0.6</code> how much of a picture you draw from is redrawn (0.1–1)
draw_change_needs_picture = ⛔ --change is for drawing from a picture: send a photo with <code>/draw …</code> as its caption, or reply /draw to a picture.
upscale_caption = 🔍 Twice the size: { $width }×{ $height } px, as a file (Telegram does not shrink it).
upscale_started = 🔍 Making it bigger…
button_upscale_one = 🔍 2×
button_upscale = 🔍 2× #{ $k }
draw_details =
    { "\u000A" }⚙️ { $steps } { $steps ->
        [one] step
       *[other] steps
    } · { $sampler } · { $width }×{ $height }
# Why a job failed (storage.contract.FailureCode): the engine reports a code and its parameters.
failure_model_gone = this model no longer exists (it was deleted).
failure_model_not_ready = this model is not ready to draw with yet.
failure_weights_missing = the model's weights are missing on the server.
failure_no_photos = none of the photos could be used for training. Please send at least a few clear photos.
failure_no_token = you have used every identifier for your models; delete one of them first.
failure_out_of_memory = the GPU ran out of memory, even with lighter settings. Try fewer images or a smaller size.
failure_diverged = training went wrong (the numbers blew up). Please try again, perhaps with other photos.
failure_cancelled = it was cancelled.
failure_unknown_kind = the engine does not know this kind of job ({ $kind }).
failure_bad_request = the engine refused the request ({ $detail }).
failure_no_room = there is no room to save the result on the server right now. Please try again later.
failure_internal = something went wrong in the engine. The operator can find details in its log.
failure_gave_up =
    the engine stopped unexpectedly { $attempts } { $attempts ->
        [one] time
       *[other] times
    } (it crashed or was restarted), so I gave up. Please try again; if it keeps happening, tell the bot's operator.
failure_picture_gone = the picture to draw from is no longer kept. Send it again.
failure_picture_unreadable = the picture to draw from cannot be read. Send another one.
draw_no_pictures = ⛔ { $model } cannot start from a picture here. Describe the picture in words instead: <code>/draw …</code>
draw_draft = ✏️ Your model is still training, so this is a quick <b>draft</b>: drawn from your own photos as references, not from a trained model. Once the model is ready, /draw uses it.
