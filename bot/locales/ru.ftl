help =
    Привет! Я <b>Кабина</b>. По нескольким фотографиям я запоминаю человека, питомца или вещь,
    а потом рисую их где угодно — в Париже, маслом, в космосе.
    Всё работает на нашем сервере; фотографии остаются у нас, и только вы решаете, кто может пользоваться вашей моделью.
    
    <b>Как это работает</b>
    1. Пришлите мне от { $min } до { $max } фото одного человека, питомца или предмета (разные ракурсы и фон; можно альбомом или файлами).
    2. Отправьте <code>/train dog</code> — английское слово говорит, кто на фото (dog, cat, woman, man, toy…).
    3. Когда обучение закончится, просто опишите картинку: <code>/draw in Paris</code> нарисует вашей основной моделью.
    Пришлите фото с подписью <code>/draw …</code> (или ответьте /draw на картинку) — и я начну с этой картинки.
    
    /photos — ваш набор фото · /clear — собрать набор заново
    /models — ваши модели: основная, переименовать, ссылка, экспорт, удаление
    /settings — модель, сэмплер, шаги, формат, число картинок · /language — русский или английский
    /cancel — отменить задачу в очереди или в работе
    { $options }
    Под каждым результатом: 📄 пришлёт картинки PNG-файлами, без сжатия Telegram.
    В группе: добавьте меня, отправьте там <code>/share</code> — и все смогут рисовать через <code>/draw</code>.
    /forgetme — удалить всё, что я о вас храню
help_group =
    Я <b>Кабина</b>: рисую людей, питомцев и вещи, которым меня научили пользователи.
    Владельцы: <code>/share</code> здесь откроет группе вашу модель, <code>/unshare</code> — закроет.
    Все: <code>/draw sks dog on the moon</code> со словом общей модели. Обучение — в личном чате со мной.
cmd_start = что умеет Кабина
cmd_help = как пользоваться
cmd_photos = мой набор фото
cmd_clear = удалить мой набор фото
cmd_train = обучить модель: /train dog
cmd_draw = нарисовать: /draw sks dog in Paris
cmd_models = мои модели
cmd_cancel = отменить задачу
cmd_share = открыть мою модель группе
cmd_unshare = закрыть мою модель здесь
photos_saved =
    ✅ { $n ->
        [one] Сохранена { $n } фотография
        [few] Сохранены { $n } фотографии
       *[many] Сохранено { $n } фотографий
    }.
photos_duplicate =
    ♻️ { $n } { $n ->
        [one] фотография уже есть
        [few] фотографии уже есть
       *[many] фотографий уже есть
    } в наборе — пропускаю.
photos_full =
    ⛔ Не сохранила { $n } { $n ->
        [one] фотографию
        [few] фотографии
       *[many] фотографий
    }: набор полон (в нём помещается { $max }). /clear начнёт заново.
refused_not_image = ⛔ Это не изображение. Присылайте фото или картинки файлами (JPEG, PNG, WebP, HEIC).
refused_too_big = ⛔ Файл больше { $limit_mb } МБ — Telegram не даёт ботам скачивать такие. Пришлите его как фото.
refused_corrupt = ⛔ Не получилось открыть изображение: файл повреждён.
refused_small = ⛔ Изображение слишком маленькое: нужно хотя бы { $min_side }×{ $min_side } пикселей.
refused_huge = ⛔ В изображении слишком много пикселей (больше 40 мегапикселей). Пришлите версию поменьше.
photos_count = 📸 В наборе { $count }/{ $max } фото. Для обучения нужно не меньше { $min }.
photos_count_ready = 📸 В наборе { $count }/{ $max } фото — можно обучать: <code>/train dog</code> (скажите, кто на фото).
photos_none =
    Фотографий пока нет. Пришлите не меньше { $min } { $min ->
        [one] фотографии
       *[other] фотографий
    } одного человека, питомца или предмета.
photos_sheet =
    📸 В наборе { $count } { $count ->
        [one] фотография
        [few] фотографии
       *[many] фотографий
    } (для обучения нужно не меньше { $min }, помещается до { $max }). /clear — начать заново.
photos_cleared =
    🗑 Удалила { $n } { $n ->
        [one] фотографию
        [few] фотографии
       *[many] фотографий
    } вместе с файлами.
photos_none_to_clear = В наборе и так нет фотографий.
train_usage =
    Скажите одним-двумя простыми английскими словами, кто на фото:
    <code>/train dog</code>, <code>/train cat</code>, <code>/train woman</code>, <code>/train teddy bear</code>
train_not_allowed = ⛔ Обучение в этом боте доступно только одобренным пользователям. Попросите владельца бота добавить вас.
train_busy = ⏳ У вас уже идёт обучение. Дождитесь его или отмените: /cancel.
train_daily_cap =
    ⛔ Сегодня вы уже начали { $cap } { $cap ->
        [one] обучение
        [few] обучения
       *[many] обучений
    } — это дневной лимит. Попробуйте завтра.
train_few_photos =
    📸 У вас { $have } { $have ->
        [one] фотография
        [few] фотографии
       *[many] фотографий
    }, а для обучения нужно не меньше { $need }. Пришлите ещё.
train_private_only = Обучение идёт в личном чате со мной: пришлите фотографии туда.
train_queued =
    🚀 Обучаю «{ $name }» на { $photos } { $photos ->
        [one] фотографии
       *[other] фотографиях
    }. Следующее сообщение будет показывать, как идут дела.
train_ready_caption = ✨ Примеры от вашей новой модели «{ $name }» (слово <code>{ $token }</code>).
train_ready =
    🎉 Модель готова! Используйте <code>{ $trigger }</code> в запросе, например:
    <code>/draw { $trigger } in Paris</code>
train_failed =
    😔 Обучение не удалось: { $reason }
    Фотографии на месте; /train — попробовать снова.
progress_queued =
    ⏳ В очереди: перед вами { $position } { $position ->
        [one] задача
        [few] задачи
       *[many] задач
    }.
progress_next = ⏳ Скоро начнём…
progress_class_images =
    🖼 Готовлю опорные картинки
    { $bar } { $percent }%
    { $step }/{ $total }{ $eta }
progress_training =
    🏋️ Обучение
    { $bar } { $percent }%
    шаг { $step }/{ $total }{ $eta }
progress_samples =
    🎨 Рисую примеры
    { $bar } { $percent }%
    { $step }/{ $total }{ $eta }
progress_done = ✅ Обучение завершено (около { $minutes } мин).
progress_failed = ❌ Обучение остановлено.
progress_cancelled = 🚫 Обучение отменено.
eta_seconds = осталось около { $n } с
eta_minutes = осталось около { $n } мин
cancel_done =
    🚫 Отменила { $n } { $n ->
        [one] задачу
        [few] задачи
       *[many] задач
    }.
cancel_nothing = У вас нет задач в очереди или в работе.
draw_usage =
    Опишите картинку после /draw, например <code>/draw sks dog in Paris</code>
    { $options }
draw_bad_option = ⛔ { $option } должно быть от { $low } до { $high }.
draw_unknown_option_unnamed = ⛔ Не знаю такого параметра. Здесь есть: { $options }.
draw_unknown_option = ⛔ Не знаю параметра { $option }. Здесь есть: { $options }.
draw_missing_value = ⛔ Для { $option } нужно значение, например <code>{ $option } 4</code>.
draw_bad_quotes = ⛔ Кавычка не закрыта. Пример: <code>--neg "blurry, dark"</code>
draw_negative_too_long =
    ⛔ Текст --neg слишком длинный: не больше { $limit } { $limit ->
        [one] символа
       *[other] символов
    }, это около { $words } { $words ->
        [one] слова
       *[other] слов
    }.
draw_prompt_too_long =
    ⛔ Запрос слишком длинный: модель читает около { $words } { $words ->
        [one] слова
       *[other] слов
    } (не больше { $chars } { $chars ->
        [one] символа
       *[other] символов
    }). Сократите его.
draw_no_identifier =
    🤔 Какой моделью рисовать? Назовите её в запросе или выберите основную в /settings:
    { $choices }
draw_ambiguous =
    🤔 На это слово здесь откликаются несколько моделей. Выберите:
    { $choices }
draw_two_models = ⛔ Одна модель на картинку: в запросе названы две.
draw_no_models = У вас ещё нет обученной модели. Пришлите фото одного объекта, затем /train — см. /help.
draw_model_training = ⏳ Ваша модель ещё учится. Я пришлю примеры, когда она будет готова.
draw_no_models_group = В этой группе пока нет общих моделей. Владельцы: отправьте здесь <code>/share</code>.
draw_queued =
    🎨 В очереди: перед вами { $position } { $position ->
        [one] задача
        [few] задачи
       *[many] задач
    }.
draw_started = 🎨 Рисую…
draw_started_short = 🎨 Рисую…
draw_caption =
    🎨 { $prompt }
    🌱 { $count ->
        [one] зерно
       *[other] зёрна
    } (seed) { $seeds }{ $note }
draw_prompt_cut =
    { "\u000A" }✂️ запрос обрезан до { $tokens } { $tokens ->
        [one] токена
       *[other] токенов
    }
draw_negative_cut =
    { "\u000A" }✂️ текст --neg обрезан до того, что модель читает
draw_more = Ещё?
draw_failed = 😔 Не удалось нарисовать: { $reason }
draw_cancelled = 🚫 Рисование отменено.
draw_access_ended = ⛔ Этот рисунок не доставлен: модель здесь больше не доступна.
button_again = 🔁 Ещё раз
button_vary = ✨ #{ $k }
button_expired = Кнопка устарела; отправьте команду заново.
button_not_yours = Это не ваше.
models_none = Моделей пока нет. Пришлите фото и /train — см. /help.
models_header =
    У вас { $n } { $n ->
        [one] модель
        [few] модели
       *[many] моделей
    }:
model_card =
    <b>{ $name }</b>{ $default }
    класс: { $cls } · слово: <code>{ $token }</code>
    { $status } · { $date }
model_is_default = { " " }⭐
status_queued = ⏳ в очереди
status_training = 🏋️ обучается
status_ready = ✅ готова
status_failed = ❌ не удалось
status_deleted = 🗑 удалена
button_default = ⭐ Основная
button_link = 🔗 Ссылка
button_export = 📦 Экспорт LoRA
button_delete = 🗑 Удалить
button_confirm_delete = 🗑 Да, удалить
button_keep = ↩️ Оставить
button_revoke = ⛔ Отозвать ссылки
model_default_set = ⭐ Теперь это ваша основная модель: /draw без слова модели рисует ею, и она побеждает, если у двух моделей одно слово.
model_link =
    🔗 Любой, кто откроет ссылку, сможет рисовать «{ $name }» в чате со мной:
    { $link }
    Отозвать можно кнопкой ниже.
model_links_revoked =
    Отозвала { $n } { $n ->
        [one] ссылку
        [few] ссылки
       *[many] ссылок
    }.
model_no_file = Файл весов недоступен.
model_export_caption = Веса LoRA (формат kohya/A1111). Слово: { $token }
model_deleted = 🗑 Модель «{ $name }» удалена.
model_deleted_short = Удалено
link_invalid = Ссылка недействительна или отозвана.
link_own_model = Это ваша собственная модель — ей уже можно рисовать.
link_redeemed = 🎁 { $owner } открывает вам модель «{ $name }». Попробуйте: <code>/draw { $trigger } in Paris</code>
share_no_models = У вас нет готовой модели. Обучите её в личном чате со мной.
share_which = Какую модель? { $choices }
share_unknown = Не знаю такой модели. Ваши: { $choices }
share_done =
    🤝 «{ $name }» теперь доступна группе. Рисуйте так:
    { $usage }
share_line = • <code>/draw@{ $bot } { $handle } { $cls } …</code> — «{ $name }», владелец { $owner }
unshare_done = 🔒 Больше не доступны группе: { $names }.
unshare_nothing = Ни одна ваша модель здесь не открыта.
unshare_not_owner = ⛔ Закрыть доступ может только владелец модели.
rate_limited = 🐢 Чуть помедленнее, пожалуйста — попробуйте через { $seconds } с.
error_generic = 😔 У меня что-то сломалось. Ничего из присланного не потеряно; попробуйте чуть позже.
unknown_reason = непредвиденная ошибка
unknown_command = Не знаю такой команды. /help — что я умею.
not_understood = Пришлите фото для обучения или /help — что я умею.
report_card = 📊 Отчёт: картинки по простому запросу «{ $name }» до (сверху) и после (снизу) обучения, с теми же зёрнами. Дрейф { $drift } — простой «{ $name }» выглядит как прежде.
report_card_warning = ⚠️ Отчёт: картинки по простому запросу «{ $name }» после обучения сильно изменились (дрейф { $drift }) — теперь любой «{ $name }» может выйти похожим на ваш. Обучите заново на меньшем или более разнообразном наборе фотографий, чтобы простой «{ $name }» остался обычным.
button_unavailable = Эта кнопка здесь не работает. Отправьте команду заново.
draw_too_many =
    ⏳ У вас уже { $n } { $n ->
        [one] рисунок
        [few] рисунка
       *[many] рисунков
    } в очереди. Новые приму, как только один из них будет готов.
train_new_class_cap =
    ⛔ «{ $word }» — не из списка обычных слов, а своих слов можно взять не больше { $cap }, и они уже заняты: { $used }.
    Выберите обычное слово для того, что на фото: dog, cat, man, woman, child, toy, teddy bear, car, house…
model_shared_in = 🤝 открыта в группах: { $groups }
model_links_open =
    🔗 { $links } { $links ->
        [one] открытая ссылка
        [few] открытые ссылки
       *[many] открытых ссылок
    } · по ссылке { $people ->
        [one] рисует
       *[other] рисуют
    } { $people } { $people ->
        [one] человек
        [few] человека
       *[many] человек
    }
models_page = Страница { $page } из { $pages }
button_page_newer = ◀ Новее
button_page_older = Старше ▶
button_stop_group = 🚫 Убрать из { $title }
button_stop_model_group = 🚫 «{ $name }» в { $title }
model_links_revoked_detail =
    ⛔ «{ $name }»: { $links ->
        [one] отозвана { $links } ссылка
        [few] отозваны { $links } ссылки
       *[many] отозвано { $links } ссылок
    }. Они больше не открываются, а те, кто открыл их раньше ({ $people } { $people ->
        [one] человек
        [few] человека
       *[many] человек
    }), больше не могут рисовать этой моделью.
    { $groups }
revoke_groups_remain = Доступ в группах — не ссылки, он остаётся: { $groups }. Закрыть его можно кнопками под моделью в /models.
revoke_no_groups = Ни в одной группе она не открыта.
share_already_stopped = Там она уже закрыта.
share_stopped_short = Готово
share_stopped = 🔒 «{ $name }» больше не открыта в «{ $title }»: никто там ею больше не рисует.
share_stopped_group = 🔒 Модель «{ $name }» (владелец { $owner }) больше не открыта в этой группе.
unshare_private_header =
    Ваши модели открыты в { $n } { $n ->
        [one] группе
       *[other] группах
    }. Нажмите на группу, чтобы закрыть там доступ:
unshare_private_none = Ни одна ваша модель не открыта в группах. (Ссылки отзываются в /models.)
forget_ask =
    ⚠️ Это удалит всё, что я о вас храню: { $models } { $models ->
        [one] модель
        [few] модели
       *[many] моделей
    } с файлами и всеми картинками, нарисованными с их помощью, { $photos } { $photos ->
        [one] фотографию
        [few] фотографии
       *[many] фотографий
    }, ваши картинки и запросы, доступы и ссылки. Отменить это будет нельзя.
button_forget_confirm = 🗑 Удалить всё
forget_kept = Ничего не удалено.
forget_done =
    🗑 Готово: удалила { $models } { $models ->
        [one] модель
        [few] модели
       *[many] моделей
    } и { $photos } { $photos ->
        [one] фотографию
        [few] фотографии
       *[many] фотографий
    } со всеми файлами и всё остальное, что я о вас хранила. Если напишете снова, начнём с чистого листа.
cmd_forgetme = удалить всё, что я о вас храню
shares_ended_owner_left = ℹ️ { $names } здесь больше не { $n ->
    [one] доступна
   *[other] доступны
}: владелец вышел из группы.
shares_ended_removed =
    👋 Меня удалили из «{ $title }», поэтому там больше не { $n ->
        [one] открыта { $n } ваша модель
        [few] открыты { $n } ваши модели
       *[many] открыто { $n } ваших моделей
    }: { $names }. Если меня добавят снова, откройте доступ заново через /share.
list_more = … и ещё { $n }
refused_unsupported = ⛔ Этот формат изображений я не читаю. Пришлите как фото или файлом JPEG, PNG, WebP или HEIC.
refused_unavailable = ⛔ Не удалось получить этот файл от Telegram. Пришлите его ещё раз как фото.
draw_bad_sampler_unnamed = ⛔ У модели { $model } нет такого сэмплера. Выберите один из: { $choices }.
draw_bad_sampler = ⛔ У модели { $model } нет сэмплера «{ $sampler }». Выберите один из: { $choices }.
draw_bad_ar = ⛔ --ar { $ar } — такой формы я не рисую. Выберите одну из: { $choices }.
draw_no_negative = ⛔ { $model } рисует без негативного запроса: уберите --neg и опишите, что хотите увидеть.
button_png = 📄 PNG
draw_png_caption = 📄 PNG в полном качестве, как нарисовано (зерно { $seed }).
cant_save = 😔 Сейчас не получается это сохранить, попробуйте, пожалуйста, позже.
help_draw_options = Параметры /draw ({ $model }): { $options }
help_option_n = <code>--n 4</code> — сколько картинок (до { $max })
help_option_steps = <code>--steps { $example }</code> — шаги (до { $max })
help_option_cfg = <code>--cfg { $example }</code> — насколько точно следовать запросу
help_option_guidance = <code>--cfg { $example }</code> — сила подсказки
help_option_seed = <code>--seed 42</code> — чтобы повторить картинку
help_option_neg = <code>--neg "blurry"</code> — чего не должно быть
help_option_sampler = <code>--sampler { $example }</code> ({ $choices })
help_option_strength = <code>--strength 0.8</code> — насколько сильна ваша модель
help_option_ar = <code>--ar 3:2</code> ({ $choices })
cmd_settings = мои настройки рисования
cmd_language = выбрать язык
cmd_stats = админ: очередь, движки, сбои, диск
cmd_ban = админ: заблокировать (id или @username)
cmd_unban = админ: снять блокировку
cmd_resetlimit = админ: вернуть пользователю обучения на сегодня
draw_hint_english = 💡 Модель лучше всего понимает английский: запрос по-английски обычно рисуется точнее.
bot_description = По нескольким вашим фотографиям я запоминаю человека, питомца или вещь и рисую их где угодно. Пришлите фото одного объекта, чтобы начать; /help расскажет как.
bot_short_description = Научите меня по фото лицу, питомцу или вещи — нарисую их где угодно.
language_choose = 🌐 Выберите язык, на котором мне с вами говорить:
language_set = 🌐 Теперь я говорю с вами по-русски.
settings_title = ⚙️ <b>Ваши настройки рисования</b> (параметр в одном /draw всё равно главнее):
settings_line_model = Модель: { $value }
settings_line_sampler = Сэмплер: { $value }
settings_line_steps = Шаги: { $value }
settings_line_ar = Формат: { $value }
settings_line_n = Картинок за раз: { $value }
settings_line_strength = Сила вашей модели: { $value }
settings_auto = авто ({ $value })
settings_no_model = пока нет
settings_choose_model = Выберите модель, которой /draw рисует, если в запросе её нет:
settings_choose_sampler = Выберите сэмплер:
settings_choose_steps = Выберите число шагов:
settings_choose_ar = Выберите формат:
settings_choose_n = Выберите, сколько картинок рисовать за один /draw:
settings_choose_strength = Выберите, насколько сильно ваша модель влияет на картинку:
settings_saved = Сохранено
settings_reset_done = Настройки сброшены
button_settings_model = 🧬 Модель
button_settings_sampler = 🎛 Сэмплер
button_settings_steps = 👣 Шаги
button_settings_ar = 🖼 Формат
button_settings_n = 🔢 Картинки
button_settings_strength = 💪 Сила
button_settings_reset = ♻️ Сбросить
button_back = ↩️ Назад
button_auto = авто
button_rename = ✏️ Переименовать
rename_ask = ✏️ Пришлите новое название для «{ $name }» (одна строка, не больше { $max } символов).
rename_done = ✅ «{ $old }» теперь называется «{ $name }».
rename_bad = ⛔ Название — одна строка от 1 до { $max } символов. Пришлите другое.
refused_too_complex = ⛔ Эта картинка устроена так, что я её не открываю (JPEG из слишком многих слоёв). Пришлите её обычным фото.
admin_only = Эта команда только для операторов бота.
admin_usage = Укажите, кого: <code>/{ $command } 12345</code> (id в Telegram) или <code>/{ $command } @username</code>.
admin_unknown_user = Я не знаю пользователя { $who }. Укажите его числовой id в Telegram.
admin_ban_admin = Администратора нельзя заблокировать; сначала уберите его из ADMIN_IDS.
admin_banned =
    Пользователь { $user } заблокирован: он получит одно сообщение, дальше бот его не слышит. Отменила { $jobs } { $jobs ->
        [one] его задачу
        [few] его задачи
       *[many] его задач
    }.
admin_already_banned =
    Пользователь { $user } уже заблокирован. Отменила { $jobs } { $jobs ->
        [one] его задачу
        [few] его задачи
       *[many] его задач
    }.
admin_unbanned = Пользователь { $user } снова может пользоваться ботом.
admin_not_banned = Пользователь { $user } не заблокирован.
admin_limit_reset =
    Пользователь { $user } может сегодня начать ещё { $cap } { $cap ->
        [one] обучение
        [few] обучения
       *[many] обучений
    }: прежние больше не считаются.
banned = Извините, этот бот больше вас не обслуживает.
stats =
    <b>Kabina сейчас</b>
    Пользователей: { $users } (заблокировано: { $banned })
    <b>Очередь</b> (вид: ждут · идут · дольше всех ждёт)
    { $queues }
    Сегодня (UTC): обучений { $trainings }, рисунков { $draws }
    Сбоев за 24 ч: { $failures }
    Результатов ещё не доставлено: { $backlog }
    <b>Живые движки</b>
    { $engines }
    Диск: база { $database }; свободно { $free } из { $total }
stats_queue_line = { $kind }: { $queued } · { $running } · { $wait }
stats_engine_line = { $worker }: { $title } ({ $family }), на связи { $seen } назад, { $busy }
stats_idle = свободен
stats_none = нет
stats_no_engine = нет — ничего не будет нарисовано или обучено, пока не запустится движок
help_option_change = <code>--change 0.6</code> — насколько перерисовать картинку, с которой начинаем (0,1–1)
draw_change_needs_picture = ⛔ --change нужен, когда рисуем с картинки: пришлите фото с подписью <code>/draw …</code> или ответьте /draw на картинку.
upscale_caption = 🔍 Вдвое больше: { $width }×{ $height } px, файлом (Telegram его не уменьшит).
upscale_started = 🔍 Увеличиваю…
button_upscale_one = 🔍 2×
button_upscale = 🔍 2× #{ $k }
draw_details =
    { "\u000A" }⚙️ { $steps } { $steps ->
        [one] шаг
        [few] шага
       *[many] шагов
    } · { $sampler } · { $width }×{ $height }
# Почему задание не удалось (storage.contract.FailureCode): движок сообщает код и его параметры.
failure_model_gone = этой модели больше нет (её удалили).
failure_model_not_ready = эта модель ещё не готова рисовать.
failure_weights_missing = на сервере нет весов этой модели.
failure_no_photos = ни одно фото не подошло для обучения. Пришлите, пожалуйста, хотя бы несколько чётких фото.
failure_no_token = все идентификаторы для ваших моделей заняты; сначала удалите одну из моделей.
failure_out_of_memory = видеокарте не хватило памяти даже с облегчёнными настройками. Попробуйте меньше картинок или меньший размер.
failure_diverged = обучение пошло не так (числа разошлись). Попробуйте ещё раз, возможно, с другими фото.
failure_cancelled = задание отменено.
failure_unknown_kind = движок не знает такого задания ({ $kind }).
failure_bad_request = движок отклонил запрос ({ $detail }).
failure_no_room = на сервере сейчас нет места, чтобы сохранить результат. Попробуйте, пожалуйста, позже.
failure_internal = в движке что-то сломалось. Подробности — в его журнале у оператора.
failure_gave_up =
    движок неожиданно останавливался { $attempts } { $attempts ->
        [one] раз
        [few] раза
       *[many] раз
    } (упал или был перезапущен), поэтому я остановила задание. Попробуйте ещё раз; если повторится, сообщите оператору бота.
failure_picture_gone = исходной картинки больше нет. Пришлите её ещё раз.
failure_picture_unreadable = исходную картинку не получается прочитать. Пришлите другую.
draw_no_pictures = ⛔ { $model } здесь не умеет начинать с картинки. Опишите картинку словами: <code>/draw …</code>
draw_draft = ✏️ Ваша модель ещё учится, поэтому это быстрый <b>черновик</b>: он нарисован по вашим фотографиям как образцам, а не обученной моделью. Когда модель будет готова, /draw будет рисовать ею.
