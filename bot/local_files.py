"""Files of a local Bot API server (`telegram-bot-api --local`), read from its disk rather than over HTTP.

In local mode getFile answers with an absolute path on the server's own filesystem, which the bot sees mounted
under another folder (TELEGRAM_API_FILES=SERVER_DIR:BOT_DIR). That path comes from outside this process: a path
outside the server's folder (`/etc/passwd`, `..`, a symlink leading out) is refused before anything is opened,
and a file over the byte cap is refused by its size on disk before a byte of it is read."""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from aiogram.client.telegram import FilesPathWrapper, TelegramAPIServer

from bot.services.photos import FileTooBig, FileUnavailable
from storage import Settings


class LocalFileRefused(FileUnavailable):
    """The local server named a file the bot must not, or cannot, read. The message never holds the path: the
    server keeps each bot's files under a folder named after its token."""


class MountedFiles(FilesPathWrapper):
    """SERVER_DIR on the local server's disk is BOT_DIR here; nothing outside it is ever mapped."""

    def __init__(self, server_dir: PurePosixPath, bot_dir: Path) -> None:
        self.server_dir = server_dir
        self.bot_dir = bot_dir

    def to_local(self, path: Path | str) -> Path:
        server_path = PurePosixPath(path)
        if not server_path.is_absolute():
            raise LocalFileRefused("the Bot API server gave a relative file path: is it started with --local, "
                                   "as TELEGRAM_API_LOCAL=true says?")
        if ".." in server_path.parts:
            raise LocalFileRefused("the local Bot API server gave a file path with '..'")
        try:
            relative = server_path.relative_to(self.server_dir)
        except ValueError:
            raise LocalFileRefused("the local Bot API server gave a file path outside TELEGRAM_API_FILES") from None
        return self.bot_dir / relative

    def to_server(self, path: Path | str) -> PurePosixPath:
        return self.server_dir / Path(path).relative_to(self.bot_dir)


def api_server(settings: Settings) -> TelegramAPIServer | None:
    """The Bot API server the settings name; None: Telegram's cloud."""
    if settings.telegram_api_url is None:
        return None
    if not settings.telegram_api_local:
        return TelegramAPIServer.from_base(settings.telegram_api_url)
    return TelegramAPIServer.from_base(settings.telegram_api_url, is_local=True,
                                       wrap_local_file=MountedFiles(*settings.local_api_files()))


def read_local_file(api: TelegramAPIServer, server_path: str, limit: int) -> bytes:
    """The file's bytes, FileTooBig over `limit`, LocalFileRefused for a path outside the mapped folder."""
    files = api.wrap_local_file
    if not isinstance(files, MountedFiles):
        raise LocalFileRefused("a local Bot API server needs TELEGRAM_API_FILES")
    path = files.to_local(server_path)
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise LocalFileRefused("the local Bot API server's file is not under TELEGRAM_API_FILES' BOT_DIR here: "
                               "is its folder mounted there?") from None
    if not real.is_relative_to(files.bot_dir.resolve()):
        raise LocalFileRefused("the local Bot API server's file leads outside TELEGRAM_API_FILES (a symlink)")
    # O_NOFOLLOW and fstat: the file measured is the file read, even if the name is swapped in between.
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        raise LocalFileRefused("the local Bot API server's file could not be opened") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise LocalFileRefused("the local Bot API server's file is not a regular file")
        if info.st_size > limit:
            raise FileTooBig
        data = handle.read(limit + 1)  # a file still growing is cut off at the cap all the same
    if len(data) > limit:
        raise FileTooBig
    return data


__all__ = ["LocalFileRefused", "MountedFiles", "api_server", "read_local_file"]
