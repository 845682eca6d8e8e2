"""Collecting training photos: single photos, albums, image files, duplicates and every refusal."""

from __future__ import annotations

import io

from PIL import Image

from storage import Storage
from tests.fake_telegram import FakeTelegram
from tests.helpers import User, photo_bytes, wait_reply


async def test_a_photo_is_saved_and_counted(kabina, fake: FakeTelegram, store: Storage, ann: User) -> None:
    ann.photo(photo_bytes(1))
    text = await wait_reply(fake, ann.id, "Saved")
    assert "1/6" in text and "at least 3" in text
    assert await store.photos.count(ann.id) == 1


async def test_album_of_three_photos_is_acknowledged_once(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    ann.album([photo_bytes(i) for i in range(3)])
    text = await wait_reply(fake, ann.id, "Saved 3")
    await fake.wait_idle(quiet=0.8)
    assert len(fake.texts(ann.id)) == 1
    assert "3/6" in text and "/train" in text
    assert await store.photos.count(ann.id) == 3


async def test_image_sent_as_file_is_kept_in_full_quality(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    original = photo_bytes(5, size=(900, 700), fmt="PNG")
    fake.send_document(ann.data, original, "me.png", "image/png")
    await wait_reply(fake, ann.id, "Saved")
    (photo,) = await store.photos.list(ann.id)
    assert (photo.width, photo.height) == (900, 700)
    assert await store.blobs.get(photo.blob_key) == original


async def test_duplicates_are_ignored_with_a_word(kabina, fake: FakeTelegram, store: Storage, ann: User) -> None:
    first = ann.photo(photo_bytes(1))
    await wait_reply(fake, ann.id, "Saved")
    stored = fake.files[first["photo"][-1]["file_id"]]
    ann.photo(b"", stored=stored)  # the same Telegram file forwarded again
    fake.send_document(ann.data, photo_bytes(1), "copy.jpg", "image/jpeg")  # same bytes, new file
    await fake.wait_for(lambda: len(ann.replies()) == 3, what="three replies")
    assert sum("already in your set" in t for t in ann.replies()) == 2
    assert await store.photos.count(ann.id) == 1


async def test_non_images_corrupt_and_tiny_images_are_refused_with_the_reason(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    fake.send_document(ann.data, b"%PDF-1.4 not a picture", "cv.pdf", "application/pdf")
    await wait_reply(fake, ann.id, "not an image")
    fake.send_document(ann.data, b"\xff\xd8\xff\xe0 broken jpeg", "broken.jpg", "image/jpeg")
    await wait_reply(fake, ann.id, "could not open")
    ann.photo(photo_bytes(3, size=(100, 80)))
    await wait_reply(fake, ann.id, "too small")
    assert await store.photos.count(ann.id) == 0
    assert not any("Traceback" in t for t in ann.replies())


async def test_files_over_the_download_limit_are_refused_before_download(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    fake.send_document(ann.data, None, "huge.png", "image/png", size=25 * 1024 * 1024)
    await wait_reply(fake, ann.id, "larger than 20 MB")
    assert fake.calls_of("getFile") == [] and fake.calls_of("download") == []
    assert await store.photos.count(ann.id) == 0


async def test_the_set_stops_at_max_photos(kabina, fake: FakeTelegram, store: Storage, ann: User) -> None:
    ann.album([photo_bytes(i) for i in range(6)])
    await wait_reply(fake, ann.id, "Saved 6")
    ann.photo(photo_bytes(99))
    await wait_reply(fake, ann.id, "set is full")
    assert await store.photos.count(ann.id) == 6


async def test_photos_shows_a_contact_sheet_and_clear_empties_the_set(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    ann.album([photo_bytes(i) for i in range(4)])
    await wait_reply(fake, ann.id, "Saved 4")
    ann.say("/photos")
    (call,) = await fake.wait_call("sendPhoto", ann.id)
    assert "4 photo" in call.params["caption"]
    sheet = Image.open(io.BytesIO(call.images()[0]))
    assert sheet.width >= 4 * 100
    ann.say("/clear")
    await wait_reply(fake, ann.id, "Removed 4")
    assert await store.photos.count(ann.id) == 0
    ann.say("/photos")
    await wait_reply(fake, ann.id, "no photos yet")


async def test_a_flood_of_photos_gets_a_polite_reply(
    kabina, fake: FakeTelegram, store: Storage, ann: User, settings
) -> None:
    for i in range(34):
        ann.photo(photo_bytes(200 + i, size=(260, 260)))
    await wait_reply(fake, ann.id, "Slow down")
    await fake.wait_idle(quiet=0.5)
    assert sum("Slow down" in t for t in ann.replies()) == 1


async def test_the_size_bar_follows_the_base_model_the_engine_serves(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    from storage import EngineInfo

    ann.photo(photo_bytes(1, (400, 400)))
    await wait_reply(fake, ann.id, "Saved 1")
    # An SDXL engine trains at 1024 px: a 400 px photo would be upscaled into mush, so it is refused now.
    await store.engines.publish("gpu-1", EngineInfo(family="sdxl", resolution=1024))
    ann.photo(photo_bytes(2, (400, 400)))
    assert "512×512" in await wait_reply(fake, ann.id, "too small")
    assert await store.photos.count(ann.id) == 1


async def test_an_iphone_photo_sent_as_a_heic_file_is_accepted(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    import pillow_heif

    from tests.helpers import photo_image

    heif = pillow_heif.from_pillow(photo_image(7, (640, 480)))
    out = io.BytesIO()
    heif.save(out, format="HEIF", quality=90)
    fake.send_document(ann.data, out.getvalue(), "IMG_0042.HEIC", "image/heic")
    text = await wait_reply(fake, ann.id, "📸")
    assert "Saved 1" in text, text
    (photo,) = await store.photos.list(ann.id)
    assert (photo.width, photo.height) == (640, 480)
    ann.say("/photos")
    (sheet,) = await fake.wait_call("sendPhoto", ann.id)  # the contact sheet reads it too
    assert Image.open(io.BytesIO(sheet.images()[0])).getpixel((80, 80)) != (255, 255, 255)


async def test_a_picture_format_we_cannot_read_is_refused_as_unsupported_not_damaged(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    jpeg_xl = b"\x00\x00\x00\x0cJXL \r\n\x87\n" + bytes(range(256)) * 8
    fake.send_document(ann.data, jpeg_xl, "holiday.jxl", "image/jxl")
    text = await fake.wait_for(lambda: next(iter(ann.replies()), None), what="a reply")
    assert "can't read that picture format" in text and "damaged" not in text
    assert await store.photos.count(ann.id) == 0


async def test_a_download_is_capped_by_the_bytes_received_not_the_size_declared(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    """A local Bot API server hands out files of any size, and file_size is only what it declares."""
    from bot.services.images import DOWNLOAD_LIMIT

    oversized = photo_bytes(8, fmt="PNG") + b"\0" * (DOWNLOAD_LIMIT + 1)
    fake.send_document(ann.data, oversized, "big.png", "image/png", size=300_000)
    text = await fake.wait_for(lambda: next(iter(ann.replies()), None), what="a reply", timeout=20)
    assert "larger than 20 MB" in text
    assert await store.photos.count(ann.id) == 0


async def test_a_scan_bomb_sent_as_a_file_is_refused_and_not_saved(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    from tests.helpers import scan_bomb

    fake.send_document(ann.data, scan_bomb(), "IMG_0001.jpg", "image/jpeg")
    assert "too many layers" in await wait_reply(fake, ann.id, "⛔")
    assert await store.photos.count(ann.id) == 0


async def test_what_a_file_is_is_decided_by_its_bytes_not_its_name_or_type(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    from tests.helpers import eps_bytes

    # PostScript dressed as a JPEG is a document, not a picture (and never reaches Ghostscript).
    fake.send_document(ann.data, eps_bytes(), "photo.jpg", "image/jpeg")
    await wait_reply(fake, ann.id, "not an image")
    # A real photo under a name and type that say otherwise is still a photo.
    fake.send_document(ann.data, photo_bytes(11, (600, 600)), "notes.txt", "text/plain")
    await wait_reply(fake, ann.id, "Saved 1")
    assert await store.photos.count(ann.id) == 1


async def test_a_photo_with_damaged_exif_is_refused_politely(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    from tests.helpers import damaged_exif_jpeg

    fake.send_document(ann.data, damaged_exif_jpeg(), "odd.jpg", "image/jpeg")
    await wait_reply(fake, ann.id, "could not open")
    assert await store.photos.count(ann.id) == 0


async def test_the_contact_sheet_leaves_a_stored_scan_bomb_undecoded(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    """A bomb saved before the bound existed shows as an empty frame; the other photos are drawn."""
    from tests.helpers import scan_bomb

    await store.photos.add(ann.id, file_unique_id="old-bomb", data=scan_bomb(), width=2000, height=2000)
    await store.photos.add(ann.id, file_unique_id="fine", data=photo_bytes(12, (600, 600)), width=600, height=600)
    ann.say("/photos")
    (call,) = await fake.wait_call("sendPhoto", ann.id)
    sheet = Image.open(io.BytesIO(call.images()[0])).convert("RGB")
    assert min(sheet.getpixel((80, 80))) > 240  # the empty frame, not the grey bomb
    assert sheet.getpixel((240, 80)) != (255, 255, 255)


async def test_photos_is_rate_limited_with_one_polite_reply(
    kabina, fake: FakeTelegram, store: Storage, ann: User
) -> None:
    await store.photos.add(ann.id, file_unique_id="one", data=photo_bytes(13, (600, 600)), width=600, height=600)
    for _ in range(6):
        ann.say("/photos")
    await wait_reply(fake, ann.id, "Slow down")
    await fake.wait_idle(quiet=0.5)
    assert len(fake.calls_of("sendPhoto", ann.id)) == 3
    assert sum("Slow down" in t for t in ann.replies()) == 1
