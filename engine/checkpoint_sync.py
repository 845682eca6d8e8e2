"""Training checkpoints in the blob store, so a training killed on one host resumes on another: each checkpoint is
uploaded after it is written locally (its pointer last), and fetched when the local folder has none."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from engine import lora_files
from storage.blobs import BlobStore
from storage.errors import NotFound
from storage.files import write_atomic

log = logging.getLogger(__name__)

POINTER = "latest.json"


async def upload(blobs: BlobStore, prefix: str, folder: Path) -> None:
    """The newest local checkpoint under `prefix`: its files first, `latest.json` last (a host that dies mid-way
    leaves the previous pointer, still naming whole files), then the older steps go."""
    if blobs.local_path(prefix) is not None and blobs.local_path(prefix) == Path(folder).resolve():
        return  # the local folder is the blob store's own
    ckpt = lora_files.latest_checkpoint(folder)
    if ckpt is None:
        return
    step = ckpt.folder.name
    for path in sorted(ckpt.folder.iterdir()):
        if path.is_file():
            await blobs.put_file(f"{prefix}/{step}/{path.name}", path)
    await blobs.put_file(f"{prefix}/{POINTER}", Path(folder) / POINTER)
    for key in await blobs.list(prefix):
        if key.split("/")[-2].startswith("step-") and key.split("/")[-2] != step:
            await blobs.delete(key)


async def restore(blobs: BlobStore, prefix: str, folder: Path) -> int:
    """The blob store's checkpoint written into `folder` when the folder has none or an older one (another host
    trained on since); returns the step the folder now holds (0: none)."""
    local = lora_files.latest_checkpoint(folder)
    if blobs.local_path(prefix) is not None and blobs.local_path(prefix) == Path(folder).resolve():
        return local.step if local is not None else 0
    try:
        pointer = json.loads(await blobs.get(f"{prefix}/{POINTER}"))
        step = str(pointer["folder"])
        newer = local is None or int(pointer["step"]) > local.step
    except (NotFound, ValueError, KeyError):
        return local.step if local is not None else 0
    if not newer:
        return local.step
    folder = Path(folder)
    for key in await blobs.list(f"{prefix}/{step}"):
        await blobs.download(key, folder / step / key.rsplit("/", 1)[-1])
    # The pointer last: a restore cut short leaves no pointer at half a checkpoint.
    write_atomic(folder / POINTER, json.dumps(pointer).encode())
    restored = lora_files.latest_checkpoint(folder)
    if restored is None:
        return 0
    log.info("checkpoint of step %d fetched from the blob store", restored.step)
    return restored.step
