from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from storage import DuplicatePhoto, ModelStatus, Storage, TokenTaken


async def _ready_model(store: Storage, owner: int, token: str, class_word: str = "dog") -> int:
    model = await store.lifecycle.import_model(owner, name=class_word, class_word=class_word, token=token,
                                               weights=b"w")
    return model.id


async def test_the_same_photo_twice_is_a_duplicate_by_file_or_by_content(store: Storage) -> None:
    photo = await store.photos.add(1, file_unique_id="A", data=b"jpeg bytes", width=600, height=800)
    assert photo.blob_key == f"photos/u1/{hashlib.sha256(b'jpeg bytes').hexdigest()}.img"  # a key, not a path
    assert await store.blobs.get(photo.blob_key) == b"jpeg bytes"
    with pytest.raises(DuplicatePhoto) as same_file:
        await store.photos.add(1, file_unique_id="A", data=b"other", width=1, height=1)
    assert same_file.value.reason == "same_file"
    with pytest.raises(DuplicatePhoto) as same_content:
        await store.photos.add(1, file_unique_id="B", data=b"jpeg bytes", width=600, height=800)
    assert same_content.value.reason == "same_content"
    # another user may send the very same picture
    await store.photos.add(2, file_unique_id="A", data=b"jpeg bytes", width=600, height=800)
    assert await store.photos.count(1) == 1


async def test_clearing_photos_does_not_break_a_model_that_uses_them(store: Storage) -> None:
    photos = [await store.photos.add(1, file_unique_id=str(i), data=bytes([i]) * 10, width=9, height=9)
              for i in range(3)]
    started = await store.lifecycle.start_training(1, 1, "dog", [p.id for p in photos])
    assert started is not None
    model = started.model
    assert await store.photos.clear(1) == 3
    assert await store.photos.list(1) == []
    assert not await store.blobs.exists(photos[0].blob_key)
    assert [await store.blobs.get(p) for p in model.photo_keys] == [bytes([i]) * 10 for i in range(3)]


async def test_one_owner_never_has_two_live_models_with_one_token(store: Storage) -> None:
    await _ready_model(store, 1, "sks")
    with pytest.raises(TokenTaken):
        await _ready_model(store, 1, "sks", "cat")
    photo = await store.photos.add(1, file_unique_id="x", data=b"x", width=1, height=1)
    other = await store.lifecycle.start_training(1, 1, "cat", [photo.id])
    assert other is not None
    assert await store.lifecycle.begin_training(other.model.id, ["sks", "zwx"]) == "zwx"
    assert await store.models.tokens_in_use(1) == {"sks", "zwx"}
    await _ready_model(store, 2, "sks")  # another owner may use sks


async def test_models_are_usable_only_by_their_owner_or_where_shared(store: Storage) -> None:
    anns = await _ready_model(store, 1, "sks")
    group = -1001
    assert [m.id for m in await store.models.usable_by(1, 1)] == [anns]
    assert await store.models.usable_by(2, 2) == []
    assert await store.models.usable_by(1, group) == []  # not even the owner, until shared
    assert await store.shares.share(anns, group, 1)
    assert not await store.shares.share(anns, group, 1)
    assert [m.id for m in await store.models.usable_by(2, group)] == [anns]
    assert await store.lifecycle.end_share(anns, group)
    assert await store.models.usable_by(2, group) == []


async def test_a_share_link_gives_access_until_revoked(store: Storage) -> None:
    anns = await _ready_model(store, 1, "sks")
    code = await store.shares.create_link(anns)
    assert len(code) >= 16
    assert (await store.shares.redeem_link(code, 2)).id == anns
    assert [m.id for m in await store.models.usable_by(2, 2)] == [anns]
    assert await store.lifecycle.revoke_links(anns) == 1
    assert await store.models.usable_by(2, 2) == []
    assert await store.shares.redeem_link(code, 3) is None
    assert await store.shares.redeem_link("made-up-code", 3) is None


async def test_a_deleted_model_disappears_with_its_files_and_shares(store: Storage) -> None:
    anns = await _ready_model(store, 1, "sks")
    await store.shares.share(anns, -5, 1)
    await store.users.upsert(1, username="ann")
    await store.users.set_default_model(1, anns)
    folder = store.files.root / "models" / str(anns)
    assert folder.is_dir()
    await store.lifecycle.delete_model(anns)
    assert (await store.models.get(anns)).status == ModelStatus.DELETED
    assert await store.models.list_for_owner(1) == []
    assert await store.shares.models_in_chat(-5) == []
    assert (await store.users.get(1)).default_model_id is None
    assert not folder.exists()
    assert await store.models.tokens_in_use(1) == set()


async def test_deliveries_cursors_and_processed_updates_survive_a_reopen(
    tmp_path: Path, database_url: str | None
) -> None:
    store = await Storage.open(tmp_path, database_url=database_url)
    await store.deliveries.save(5, "result", chat_id=9, message_id=77, state="sent", data={"n": 4})
    await store.cursors.set("bot", 42)
    await store.updates.mark(1001)
    await store.close()
    store = await Storage.open(tmp_path, database_url=database_url)
    try:
        delivery = await store.deliveries.get(5, "result")
        assert (delivery.chat_id, delivery.message_id, delivery.state, delivery.data) == (9, 77, "sent", {"n": 4})
        assert await store.deliveries.get(5, "progress") is None
        assert await store.cursors.get("bot") == 42 and await store.cursors.get("other") == 0
        assert await store.updates.seen(1001) and not await store.updates.seen(1002)
        assert await store.updates.last_id() == 1001
    finally:
        await store.close()
