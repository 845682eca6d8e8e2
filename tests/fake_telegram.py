"""A local fake of the Telegram Bot API for tests: serves updates and files, records every call the bot makes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

BOT_ID = 7000001
BOT_USERNAME = "kabina_test_bot"
DOWNLOAD_LIMIT = 20 * 1024 * 1024

# What a reverse proxy in front of the Bot API answers when the upstream is down: HTML, not JSON, and it echoes the
# request path — which carries the bot token.
PROXY_ERROR_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n"
    "<p>The upstream server did not answer the request for {path}.</p>\r\n<hr><center>nginx/1.24.0</center>\r\n"
    "</body>\r\n</html>\r\n"
)

# aiogram sends scalars JSON-encoded and strings raw; these fields must stay strings even when they look like JSON.
_STRING_FIELDS = {
    "text", "caption", "parse_mode", "callback_query_id", "file_id", "action", "url", "emoji",
    "inline_message_id", "language_code", "description", "short_description", "name", "title",
    "query", "start_parameter", "photo", "document", "certificate", "secret_token",
}


@dataclass
class Call:
    """One request the bot made."""

    method: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)
    result: Any = None
    error: str | None = None

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return value if isinstance(value, int) else None

    def images(self) -> list[bytes]:
        """Uploaded image bytes, in the order the bot sent them (for sendMediaGroup: media order)."""
        if self.method == "sendMediaGroup":
            out = []
            for item in self.params.get("media", []):
                ref = item.get("media", "")
                if isinstance(ref, str) and ref.startswith("attach://"):
                    out.append(self.files[ref.removeprefix("attach://")])
            return out
        for key in ("photo", "document"):
            ref = self.params.get(key)
            if isinstance(ref, str) and ref.startswith("attach://"):
                return [self.files[ref.removeprefix("attach://")]]
            if key in self.files:
                return [self.files[key]]
        return []


@dataclass
class Hold:
    """A call the fake keeps unanswered until the test releases it: a Telegram request in flight."""

    method: str
    where: Callable[[Call], bool] | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    call: Call | None = None
    dropped: bool = False

    def matches(self, call: Call) -> bool:
        return self.call is None and call.method == self.method and (self.where is None or self.where(call))

    def release(self, drop: bool = False) -> None:
        """Answer the call now; `drop=True`: the request never reached Telegram (its sender died first)."""
        self.dropped = drop
        self.released.set()


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes | None
    size: int
    path: str
    # What getFile answers as file_path when the test forges it (a local server gone wrong, or compromised).
    forged_path: str | None = None


@dataclass
class SentMessage:
    chat_id: int
    message_id: int
    text: str | None
    reply_markup: Any
    deleted: bool = False


class FakeTelegram:
    """The fake server. Start with `await fake.start()`; point the bot at `fake.base_url`."""

    def __init__(self, token: str = "123456:TEST-token-secret") -> None:
        self.token = token
        self.calls: list[Call] = []
        self.files: dict[str, StoredFile] = {}
        self.messages: dict[tuple[int, int], SentMessage] = {}
        self._updates: list[dict[str, Any]] = []
        self._history: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._new_update = asyncio.Condition()
        self._changed = asyncio.Event()
        self._fail_next: dict[str, list[int]] = {}
        self._answers: list[_Answer] = []
        self._chat_pace: dict[int, float] = {}
        self._chat_last_sent: dict[int, float] = {}
        self._holds: list[Hold] = []
        self.acknowledged_offset = 0
        self._closing = False
        # Telegram's flood limits, enforced like the cloud does when a test asks: more than `count` edits of one
        # message within `window` seconds, or more than `count` messages to one chat, get 429.
        self.edit_flood: tuple[int, float] | None = None
        self.flood_per_chat: tuple[int, float] | None = None
        self.base_url = ""
        # Local mode (`telegram-bot-api --local`): (the working folder as the server names it, where it really is).
        self.local: tuple[str, Path] | None = None
        self._runner: web.AppRunner | None = None
        self._date = int(time.time())

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        self._closing = True
        async with self._new_update:
            self._new_update.notify_all()
        if self._runner is not None:
            await self._runner.cleanup()

    def serve_locally(self, folder: Path, server_dir: str = "/var/lib/telegram-bot-api") -> str:
        """Act as a local Bot API server whose working folder `server_dir` is mounted at `folder`: files are
        written under `folder/<token>/` as the real server keeps them, getFile answers with the absolute path on
        the server's disk and has no 20 MB limit, and nothing is served over HTTP. Returns TELEGRAM_API_FILES."""
        self.local = (server_dir, Path(folder))
        return f"{server_dir}:{folder}"

    # --- users, chats and updates pushed by tests ----------------------------------------------------
    @staticmethod
    def user(user_id: int, first_name: str = "Ann", language: str | None = "en", username: str | None = None) -> dict:
        out: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if language:
            out["language_code"] = language
        if username:
            out["username"] = username
        return out

    @staticmethod
    def private_chat(user: dict) -> dict:
        return {"id": user["id"], "type": "private", "first_name": user["first_name"]}

    @staticmethod
    def group_chat(chat_id: int, title: str = "Friends") -> dict:
        return {"id": chat_id, "type": "supergroup", "title": title}

    def _next_message_id(self, chat_id: int) -> int:
        counter = self._message_ids.setdefault(chat_id, itertools.count(1))
        return next(counter)

    def push_update(self, update: dict[str, Any]) -> int:
        update_id = next(self._update_ids)
        self._updates.append({"update_id": update_id, **update})
        self._history.append(self._updates[-1])
        asyncio.get_running_loop().create_task(self._notify())
        return update_id

    async def _notify(self) -> None:
        async with self._new_update:
            self._new_update.notify_all()

    def _message(self, user: dict, chat: dict | None, **content: Any) -> dict:
        chat = chat or self.private_chat(user)
        return {
            "message_id": self._next_message_id(chat["id"]),
            "date": self._date,
            "chat": chat,
            "from": user,
            **content,
        }

    def send_text(self, user: dict, text: str, chat: dict | None = None, reply_to: dict | None = None) -> dict:
        """Pushes a text message (commands get their bot_command entity) and returns the message."""
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            length = len(text.split()[0])
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        if reply_to is not None:
            content["reply_to_message"] = reply_to
        message = self._message(user, chat, **content)
        self.push_update({"message": message})
        return message

    def register_file(self, data: bytes | None, size: int | None = None, suffix: str = "jpg") -> StoredFile:
        file_id = "F" + secrets.token_urlsafe(16)
        unique = "U" + secrets.token_urlsafe(8)
        stored = StoredFile(
            file_id=file_id,
            file_unique_id=unique,
            data=data,
            size=size if size is not None else len(data or b""),
            path=f"photos/file_{len(self.files)}.{suffix}",
        )
        self.files[file_id] = stored
        if self.local is not None:
            on_disk = self.local[1] / self.token / stored.path
            on_disk.parent.mkdir(parents=True, exist_ok=True)
            with open(on_disk, "wb") as handle:
                handle.write(data or b"")
                if data is None:
                    handle.truncate(stored.size)  # a file known only by its size: a sparse one of that size
        return stored

    def local_file(self, stored: StoredFile) -> Path:
        """Where a local server keeps the file, as the bot sees that folder."""
        assert self.local is not None, "serve_locally() first"
        return self.local[1] / self.token / stored.path

    def photo_sizes(self, stored: StoredFile, width: int = 512, height: int = 512) -> list[dict]:
        # Telegram offers several sizes of one photo; the largest comes last and has its own unique id.
        thumb = self.register_file(stored.data[:64] if stored.data else b"", suffix="jpg")
        return [
            {"file_id": thumb.file_id, "file_unique_id": thumb.file_unique_id, "width": 90, "height": 90,
             "file_size": thumb.size},
            {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "width": width, "height": height,
             "file_size": stored.size},
        ]

    def send_photo(
        self,
        user: dict,
        data: bytes,
        caption: str | None = None,
        media_group_id: str | None = None,
        chat: dict | None = None,
        stored: StoredFile | None = None,
    ) -> dict:
        stored = stored or self.register_file(data)
        content: dict[str, Any] = {"photo": self.photo_sizes(stored)}
        if caption:
            content["caption"] = caption
        if media_group_id:
            content["media_group_id"] = media_group_id
        message = self._message(user, chat, **content)
        self.push_update({"message": message})
        return message

    def send_album(self, user: dict, images: list[bytes], chat: dict | None = None) -> list[dict]:
        group_id = str(secrets.randbelow(10**12))
        return [self.send_photo(user, data, media_group_id=group_id, chat=chat) for data in images]

    def send_document(
        self,
        user: dict,
        data: bytes | None,
        file_name: str = "photo.png",
        mime_type: str = "image/png",
        size: int | None = None,
        chat: dict | None = None,
        media_group_id: str | None = None,
        stored: StoredFile | None = None,
        caption: str | None = None,
    ) -> dict:
        stored = stored or self.register_file(data, size=size, suffix=file_name.rsplit(".", 1)[-1])
        document = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": stored.size,
        }
        content: dict[str, Any] = {"document": document}
        if caption:
            content["caption"] = caption
        if media_group_id:
            content["media_group_id"] = media_group_id
        message = self._message(user, chat, **content)
        self.push_update({"message": message})
        return message

    def send_video(self, user: dict, caption: str | None = None, chat: dict | None = None) -> dict:
        """A video message (a caption that starts with a command gets its bot_command entity, as Telegram sends)."""
        stored = self.register_file(b"\x00\x00\x00\x18ftypmp42", suffix="mp4")
        content: dict[str, Any] = {"video": {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                                             "width": 320, "height": 240, "duration": 3, "file_size": stored.size}}
        if caption:
            content["caption"] = caption
            if caption.startswith("/"):
                content["caption_entities"] = [{"type": "bot_command", "offset": 0,
                                                "length": len(caption.split()[0])}]
        message = self._message(user, chat, **content)
        self.push_update({"message": message})
        return message

    def press_button(self, user: dict, message: SentMessage | dict, data: str) -> str:
        """Pushes a callback query as if `user` pressed the inline button with `data` under `message`."""
        if isinstance(message, SentMessage):
            chat_id, message_id, text = message.chat_id, message.message_id, message.text
        else:
            chat_id, message_id, text = message["chat"]["id"], message["message_id"], message.get("text")
        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup", "first_name": "x", "title": "x"}
        query_id = secrets.token_hex(8)
        self.push_update({
            "callback_query": {
                "id": query_id,
                "from": user,
                "chat_instance": str(chat_id),
                "data": data,
                "message": {"message_id": message_id, "date": self._date, "chat": chat,
                            "from": self.me(), "text": text or ""},
            }
        })
        return query_id

    def bot_membership(self, chat: dict, by_user: dict, old: str = "member", new: str = "left") -> int:
        """The my_chat_member update Telegram sends when someone changes the bot's status in a chat (`new`:
        "left" when removed, "kicked" when banned, "member" when added)."""
        def member(status: str) -> dict:
            out: dict[str, Any] = {"status": status, "user": self.me()}
            if status == "kicked":
                out["until_date"] = 0
            return out

        return self.push_update({"my_chat_member": {
            "chat": chat, "from": by_user, "date": self._date,
            "old_chat_member": member(old), "new_chat_member": member(new),
        }})

    def migrate_to_supergroup(self, group: dict, new_chat_id: int, by_user: dict) -> tuple[dict, dict]:
        """A group upgraded to a supergroup: Telegram posts a service message in the old chat (migrate_to_chat_id)
        and one in the new chat (migrate_from_chat_id); the bot may see either first. Returns the new chat."""
        old_chat = {"id": group["id"], "type": "group", "title": group.get("title", "Group")}
        new_chat = {"id": new_chat_id, "type": "supergroup", "title": group.get("title", "Group")}
        self.push_update({"message": self._message(by_user, old_chat, migrate_to_chat_id=new_chat_id)})
        self.push_update({"message": self._message(by_user, new_chat, migrate_from_chat_id=group["id"])})
        return old_chat, new_chat

    def redeliver_all(self) -> None:
        """Serve every update ever pushed again, as Telegram does for updates it never saw acknowledged."""
        self._updates = list(self._history)
        self.acknowledged_offset = 0
        asyncio.get_running_loop().create_task(self._notify())

    # --- failure injection -----------------------------------------------------------------------
    def fail_next(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        """The next `times` calls of `method` get 429 Too Many Requests with this retry_after."""
        self._fail_next.setdefault(method, []).extend([retry_after] * times)

    def answer_next(
        self, method: str, status: int, body: str, content_type: str = "text/html", times: int = 1,
        where: Callable[[Call], bool] | None = None,
    ) -> None:
        """The next `times` calls of `method` (matching `where`) get this raw HTTP answer instead of the Bot API's:
        a proxy's HTML error page, a truncated body, garbage. `{path}` in `body` becomes the request path (token
        included, as a careless error page shows it), `{quoted_path}` the same URL-quoted."""
        self._answers.append(_Answer(method, status, body, content_type, times, where))

    def fail_next_with(
        self, method: str, status: int, description: str, times: int = 1,
        where: Callable[[Call], bool] | None = None, retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        """The next `times` calls of `method` get the Bot API's own JSON error: 500 Internal Server Error,
        403 "Forbidden: bot was blocked by the user", 400 "Bad Request: chat not found", 401, 409, 429…"""
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        if migrate_to_chat_id is not None:  # "Bad Request: group chat was upgraded to a supergroup chat"
            body["parameters"] = {"migrate_to_chat_id": migrate_to_chat_id}
        self._answers.append(_Answer(method, status, json.dumps(body), "application/json", times, where))

    def answers_left(self) -> int:
        """Injected answers not served yet."""
        return sum(a.times for a in self._answers)

    def clear_injected(self) -> None:
        """The Bot API is well again: no more injected answers."""
        self._answers.clear()

    def last_update_id(self) -> int:
        """The id of the update pushed last."""
        return int(self._history[-1]["update_id"])

    def pace_chat(self, chat_id: int, every_s: float) -> None:
        """Telegram's flood control for one busy chat: a message to it sooner than `every_s` after the last one that
        went through gets 429 with the retry_after it would take."""
        self._chat_pace[chat_id] = every_s

    def send_unreadable(self, user: dict) -> int:
        """Pushes an update aiogram cannot parse: a forward from a hidden user without the `sender_user_name` the
        Bot API documents as required (Telegram really sends such forwards of very old messages; aiogram #1840)."""
        message = self._message(user, None, text="an old forward")
        message["forward_origin"] = {"type": "hidden_user", "date": 1422450181}
        return self.push_update({"message": message})

    def _injected(self, call: Call) -> _Answer | None:
        for answer in self._answers:
            if answer.method == call.method and answer.times > 0 and (answer.where is None or answer.where(call)):
                answer.times -= 1
                if answer.times == 0:
                    self._answers.remove(answer)
                return answer
        return None

    def _paced(self, call: Call) -> int | None:
        """The retry_after for a call to a paced chat that comes too soon, else None (and the call goes through)."""
        chat_id = call.chat_id
        if chat_id not in self._chat_pace or call.method not in _FLOOD_COUNTED:
            return None
        last = self._chat_last_sent.get(chat_id)
        every = self._chat_pace[chat_id]
        if last is not None and call.at - last < every:
            return max(1, int(every - (call.at - last) + 0.999))
        self._chat_last_sent[chat_id] = call.at
        return None

    def hold(self, method: str, where: Callable[[Call], bool] | None = None) -> Hold:
        """The next call of `method` (matching `where`) gets no answer until `hold.release()`; a bot killed
        meanwhile dies with that request in flight. `download` holds a file download."""
        held = Hold(method, where)
        self._holds.append(held)
        return held

    async def _wait_if_held(self, call: Call) -> None:
        held = next((h for h in self._holds if h.matches(call)), None)
        if held is None:
            return
        held.call = call
        call.error = "held"  # not answered (yet): it does not count as delivered
        held.arrived.set()
        self._changed.set()
        await held.released.wait()
        if held.dropped:
            raise _Dropped
        call.error = None

    # --- inspection --------------------------------------------------------------------------------
    def calls_of(self, method: str, chat_id: int | None = None) -> list[Call]:
        return [
            c for c in self.calls
            if c.method == method and c.error is None and (chat_id is None or c.chat_id == chat_id)
        ]

    def texts(self, chat_id: int) -> list[str]:
        """Texts of messages sent to a chat, in order (edits excluded)."""
        return [c.params.get("text", "") for c in self.calls_of("sendMessage", chat_id)]

    def errors(self) -> list[Call]:
        return [c for c in self.calls if c.error is not None]

    def pending_updates(self) -> int:
        return sum(1 for u in self._updates if u["update_id"] >= self.acknowledged_offset)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
        """Waits until predicate() is truthy (checked whenever the bot makes a call) and returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                methods = [c.method for c in self.calls[-15:]]
                raise AssertionError(f"timed out waiting for {what}; last calls: {methods}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 0.2))

    async def wait_call(
        self, method: str, chat_id: int | None = None, count: int = 1, timeout: float = 10.0,
        where: Callable[[Call], bool] | None = None,
    ) -> list[Call]:
        def found() -> list[Call] | None:
            calls = [c for c in self.calls_of(method, chat_id) if where is None or where(c)]
            return calls if len(calls) >= count else None

        return await self.wait_for(found, timeout, what=f"{count}× {method} to {chat_id}")

    async def wait_idle(self, quiet: float = 0.5, timeout: float = 10.0) -> None:
        """Waits until all pushed updates are acknowledged and the bot has made no call for `quiet` seconds
        (chat actions, which the bot repeats while it waits for the engine, do not count)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = max((c.at for c in self.calls if c.method != "sendChatAction"), default=0.0)
            if self.pending_updates() == 0 and time.monotonic() - last >= quiet:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"bot not idle: {self.pending_updates()} updates pending")

    # --- the HTTP side ----------------------------------------------------------------------------
    def me(self) -> dict:
        return {"id": BOT_ID, "is_bot": True, "first_name": "Kabina", "username": BOT_USERNAME,
                "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}

    async def _read_params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        params: dict[str, Any] = dict(request.query)
        files: dict[str, bytes] = {}
        if request.method == "POST" and request.can_read_body:
            if request.content_type.startswith("multipart/"):
                reader = await request.multipart()
                async for part in reader:
                    if part.filename is not None:  # type: ignore[union-attr]
                        files[part.name] = bytes(await part.read())  # type: ignore[union-attr,arg-type]
                    else:
                        params[part.name] = await part.text()  # type: ignore[union-attr]
            elif request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update(dict(await request.post()))
        parsed: dict[str, Any] = {}
        for key, value in params.items():
            if isinstance(value, str) and key not in _STRING_FIELDS:
                with contextlib.suppress(ValueError):
                    value = json.loads(value)
            parsed[key] = value
        return parsed, files

    @staticmethod
    def _error(code: int, description: str, **parameters: Any) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=code)

    async def _handle_method(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        method_name = request.match_info["method"]
        params, files = await self._read_params(request)
        call = Call(method=method_name, params=params, files=files)
        injected = self._injected(call)
        if injected is not None:
            call.error = f"{injected.status} injected"
            self.calls.append(call)
            self._changed.set()
            body = injected.body.replace("{path}", request.path).replace("{quoted_path}", quote(request.path, safe=""))
            return web.Response(status=injected.status, text=body, content_type=injected.content_type)
        if method_name == "getUpdates":
            return await self._get_updates(params)
        self.calls.append(call)
        try:
            try:
                await self._wait_if_held(call)
            except _Dropped:
                call.error = "dropped"
                return self._error(502, "Bad Gateway")
            paced = self._paced(call)
            if paced is not None:
                call.error = f"429 paced retry_after={paced}"
                return self._error(429, f"Too Many Requests: retry after {paced}", retry_after=paced)
            queue = self._fail_next.get(method_name)
            if queue:
                retry_after = queue.pop(0)
                call.error = f"429 retry_after={retry_after}"
                return self._error(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)
            if self.flood_per_chat and call.chat_id is not None and method_name in _FLOOD_COUNTED:
                limit, window = self.flood_per_chat
                recent = [c for c in self.calls_of_any(_FLOOD_COUNTED, call.chat_id)
                          if c is not call and call.at - c.at < window]
                if len(recent) >= limit:
                    call.error = "429 flood"
                    return self._error(429, "Too Many Requests: retry after 1", retry_after=1)
            if self.edit_flood and method_name == "editMessageText":
                limit, window = self.edit_flood
                recent = [c for c in self.calls_of("editMessageText", call.chat_id)
                          if c is not call and c.params.get("message_id") == params.get("message_id")
                          and call.at - c.at < window]
                if len(recent) >= limit:
                    call.error = "429 edit flood"
                    return self._error(429, "Too Many Requests: retry after 1", retry_after=1)
            handler = getattr(self, f"_m_{method_name}", None)
            if handler is None:
                call.error = "404 unknown method"
                return self._error(404, "Not Found: method not found")
            try:
                result = handler(call)
            except _BadRequest as exc:
                call.error = f"400 {exc}"
                return self._error(400, f"Bad Request: {exc}")
            call.result = result
            return web.json_response({"ok": True, "result": result})
        finally:
            self._changed.set()

    def calls_of_any(self, methods: set[str], chat_id: int) -> list[Call]:
        return [c for c in self.calls if c.method in methods and c.error is None and c.chat_id == chat_id]

    async def _get_updates(self, params: dict[str, Any]) -> web.Response:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        limit = int(params.get("limit") or 100)
        if offset:
            self.acknowledged_offset = max(self.acknowledged_offset, offset)
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            self._changed.set()
        deadline = time.monotonic() + timeout
        async with self._new_update:
            while not self._updates and not self._closing and time.monotonic() < deadline:
                try:
                    await asyncio.wait_for(self._new_update.wait(), timeout=deadline - time.monotonic())
                except TimeoutError:
                    break
        return web.json_response({"ok": True, "result": self._updates[:limit]})

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        if self.local is not None:
            self.calls.append(Call(method="download", params={"path": path}, error="404 local mode"))
            return web.Response(status=404)  # a local server's files are read from its disk
        for stored in self.files.values():
            if stored.path == path and stored.data is not None:
                call = Call(method="download", params={"path": path})
                self.calls.append(call)
                self._changed.set()
                try:
                    await self._wait_if_held(call)
                except _Dropped:
                    call.error = "dropped"
                    return web.Response(status=502)
                return web.Response(body=stored.data)
        return web.Response(status=404)

    # --- methods ----------------------------------------------------------------------------------
    def _sent(self, call: Call, **content: Any) -> dict:
        chat_id = call.params.get("chat_id")
        if not isinstance(chat_id, int):
            raise _BadRequest("chat not found")
        message_id = self._next_message_id(chat_id)
        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup", "first_name": "x", "title": "x"}
        message = {"message_id": message_id, "date": int(time.time()), "chat": chat, "from": self.me(), **content}
        markup = call.params.get("reply_markup")
        if markup:
            message["reply_markup"] = markup
        self.messages[(chat_id, message_id)] = SentMessage(chat_id, message_id, content.get("text"), markup)
        return message

    def _check_text(self, text: Any, limit: int, what: str, parse_mode: Any = None) -> None:
        if text is not None and len(str(text)) > limit:
            raise _BadRequest(f"{what} is too long")
        if text is not None and str(parse_mode).upper() == "HTML":
            check_telegram_html(str(text))

    def _uploaded_photo(self, call: Call, ref: Any) -> list[dict]:
        if isinstance(ref, str) and ref.startswith("attach://"):
            data = call.files.get(ref.removeprefix("attach://"))
            if data is None:
                raise _BadRequest("file not attached")
            return self.photo_sizes(self.register_file(data))
        if isinstance(ref, str) and ref in self.files:
            return self.photo_sizes(self.files[ref])
        raise _BadRequest("wrong file identifier")

    def _m_getMe(self, call: Call) -> dict:
        return self.me()

    def _m_deleteWebhook(self, call: Call) -> bool:
        return True

    def _m_setMyCommands(self, call: Call) -> bool:
        return True

    def _m_deleteMyCommands(self, call: Call) -> bool:
        return True

    def _m_setMyDescription(self, call: Call) -> bool:
        self._check_text(call.params.get("description"), 512, "bot description")
        return True

    def _m_setMyShortDescription(self, call: Call) -> bool:
        self._check_text(call.params.get("short_description"), 120, "bot short description")
        return True

    def _m_sendChatAction(self, call: Call) -> bool:
        return True

    def _m_answerCallbackQuery(self, call: Call) -> bool:
        self._check_text(call.params.get("text"), 200, "callback answer")
        return True

    def _m_getFile(self, call: Call) -> dict:
        stored = self.files.get(str(call.params.get("file_id")))
        if stored is None:
            raise _BadRequest("invalid file_id")
        path = stored.path
        if self.local is not None:
            path = f"{self.local[0]}/{self.token}/{stored.path}"
        elif stored.size > DOWNLOAD_LIMIT:
            raise _BadRequest("file is too big")
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_size": stored.size,
                "file_path": stored.forged_path or path}

    def _m_sendMessage(self, call: Call) -> dict:
        text = call.params.get("text")
        if not text:
            raise _BadRequest("message text is empty")
        self._check_text(text, 4096, "message", call.params.get("parse_mode"))
        return self._sent(call, text=str(text))

    def _m_sendPhoto(self, call: Call) -> dict:
        self._check_text(call.params.get("caption"), 1024, "message caption", call.params.get("parse_mode"))
        photo = self._uploaded_photo(call, call.params.get("photo"))
        content: dict[str, Any] = {"photo": photo}
        if call.params.get("caption"):
            content["caption"] = call.params["caption"]
        return self._sent(call, **content)

    def _m_sendDocument(self, call: Call) -> dict:
        self._check_text(call.params.get("caption"), 1024, "message caption", call.params.get("parse_mode"))
        ref = call.params.get("document")
        data = call.files.get(ref.removeprefix("attach://")) if isinstance(ref, str) else None
        if data is None:
            raise _BadRequest("file not attached")
        stored = self.register_file(data)
        document = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_size": stored.size}
        return self._sent(call, document=document)

    def _m_sendMediaGroup(self, call: Call) -> list[dict]:
        media = call.params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _BadRequest("wrong number of media in the group: must be 2-10")
        group_id = str(secrets.randbelow(10**12))
        out = []
        for item in media:
            self._check_text(item.get("caption"), 1024, "media caption", item.get("parse_mode"))
            content: dict[str, Any] = {"media_group_id": group_id}
            if item.get("type") == "photo":
                content["photo"] = self._uploaded_photo(call, item.get("media"))
            else:
                content["document"] = {"file_id": "x", "file_unique_id": "y"}
            if item.get("caption"):
                content["caption"] = item["caption"]
            out.append(self._sent(call, **content))
        return out

    def _existing(self, call: Call) -> SentMessage:
        key = (call.params.get("chat_id"), call.params.get("message_id"))
        message = self.messages.get(key)  # type: ignore[arg-type]
        if message is None or message.deleted:
            raise _BadRequest("message to edit not found")
        return message

    def _m_editMessageText(self, call: Call) -> dict:
        message = self._existing(call)
        text = call.params.get("text")
        self._check_text(text, 4096, "message", call.params.get("parse_mode"))
        markup = call.params.get("reply_markup")
        if text == message.text and markup == message.reply_markup:
            raise _BadRequest(
                "message is not modified: specified new message content and reply markup are exactly the same"
            )
        message.text, message.reply_markup = text, markup
        return {"message_id": message.message_id, "date": self._date, "chat": {"id": message.chat_id, "type": "private"},
                "text": text}

    def _m_editMessageReplyMarkup(self, call: Call) -> dict:
        message = self._existing(call)
        markup = call.params.get("reply_markup")
        if markup == message.reply_markup:
            raise _BadRequest("message is not modified")
        message.reply_markup = markup
        return {"message_id": message.message_id, "date": self._date, "chat": {"id": message.chat_id, "type": "private"},
                "text": message.text or ""}

    def _m_deleteMessage(self, call: Call) -> bool:
        message = self._existing(call)
        message.deleted = True
        return True


# What Telegram's HTML parse mode accepts (core.telegram.org/bots/api#html-style): these tags, properly nested and
# closed; `<`, `>` and `&` outside tags escaped; only these named entities, and numeric ones.
_HTML_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "code", "pre",
              "blockquote", "tg-emoji"}
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[a-zA-Z-]+(?:=(?:\"[^\"]*\"|'[^']*'|[^\s>]+))?)*)\s*>")
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});")


def check_telegram_html(text: str) -> None:
    """Refuse what Telegram refuses under parse_mode=HTML, with its 400 "can't parse entities"."""
    open_tags: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "<":
            match = _TAG.match(text, i)
            if match is None:
                raise _BadRequest(f"can't parse entities: unexpected '<' at byte offset {i}")
            closing, name = match.group(1) == "/", match.group(2).lower()
            if name not in _HTML_TAGS:
                raise _BadRequest(f'can\'t parse entities: unsupported start tag "{name}" at byte offset {i}')
            if closing:
                if not open_tags or open_tags[-1] != name:
                    raise _BadRequest(f'can\'t parse entities: unexpected end tag "{name}" at byte offset {i}')
                open_tags.pop()
            else:
                if name == "a" and "href" not in match.group(3):
                    raise _BadRequest(f"can't parse entities: a link without href at byte offset {i}")
                open_tags.append(name)
            i = match.end()
        elif char == "&":
            match = _ENTITY.match(text, i)
            if match is None:
                raise _BadRequest(f"can't parse entities: unsupported HTML entity at byte offset {i}")
            i = match.end()
        else:
            i += 1
    if open_tags:
        raise _BadRequest(f'can\'t parse entities: can\'t find end tag corresponding to start tag "{open_tags[-1]}"')


_FLOOD_COUNTED = {"sendMessage", "editMessageText", "sendPhoto", "sendMediaGroup", "sendDocument"}


class _BadRequest(Exception):
    pass


@dataclass
class _Answer:
    """A raw answer the test injected for the next calls of a method."""

    method: str
    status: int
    body: str
    content_type: str
    times: int
    where: Callable[[Call], bool] | None = None


class _Dropped(Exception):
    """A held request whose sender died: Telegram never saw it."""
