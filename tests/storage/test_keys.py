"""Rows name blobs by key: an install from before keys (absolute paths under DATA_DIR) is converted once at open."""

from __future__ import annotations

import json
from pathlib import Path

from storage import DrawPayload, DrawResult, Storage


async def test_a_database_written_with_absolute_paths_reads_as_keys_after_reopening(tmp_path: Path) -> None:
    data = tmp_path.resolve()
    store = await Storage.open(data)
    photo = await store.photos.add(4, file_unique_id="a", data=b"photo", width=9, height=9)
    started = await store.lifecycle.start_training(4, 4, "dog", [photo.id])
    assert started is not None
    model = started.model
    await store.blobs.put(f"models/{model.id}/lora.safetensors", b"weights")
    job = await store.lifecycle.enqueue(DrawPayload(model_id=model.id, prompt="x"), owner_id=4, chat_id=4)
    await store.lifecycle.claim("w", kinds=["draw"])
    await store.blobs.put(f"jobs/{job.id}/0.png", b"png")
    await store.lifecycle.complete(job.id, "w", DrawResult(images=[f"jobs/{job.id}/0.png"], seeds=[1]))
    # What an older Kabina wrote: absolute paths everywhere.
    old = f"{data}/"
    await store.db.execute("UPDATE photos SET blob_key = ? || blob_key", (old,))
    await store.db.execute(
        "UPDATE models SET weights_key = ?, kohya_key = ?, sample_keys = ?, photo_keys = ?, status = 'ready'",
        (f"{old}models/{model.id}/lora.safetensors", f"{old}models/{model.id}/lora.safetensors",
         json.dumps([f"{old}models/{model.id}/lora.safetensors"]), json.dumps([old + p for p in model.photo_keys])),
    )
    await store.db.execute("UPDATE jobs SET result = ?", (json.dumps(
        {"images": [f"{old}jobs/{job.id}/0.png"], "seeds": [1]}),))
    await store.close()

    async with await Storage.open(data) as store:
        photo, = await store.photos.list(4)
        model = await store.models.get(model.id)
        drawn = await store.jobs.get(job.id)
        assert photo.blob_key == f"photos/u4/{photo.sha256}.img"
        assert model.weights_key == model.kohya_key == f"models/{model.id}/lora.safetensors"
        assert model.sample_keys == [model.weights_key]
        assert model.photo_keys == [f"models/{model.id}/photos/00-{photo.sha256[:16]}.img"]
        assert drawn.result.images == [f"jobs/{job.id}/0.png"]
        assert await store.blobs.get(photo.blob_key) == b"photo"
        assert await store.blobs.get(drawn.result.images[0]) == b"png"
