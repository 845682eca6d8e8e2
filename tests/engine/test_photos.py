"""Photo intake: orientation, magick-equal crop geometry, and every rejection reason."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from engine.photos import (
    MAX_PIXELS,
    PhotoRejected,
    crop_box,
    inspect_photo,
    jpeg_scan_count,
    load_photo_set,
    prepare_photo,
)

REPO = Path(__file__).resolve().parents[2]


def _jpeg(image: Image.Image, quality: int = 92, exif: Image.Exif | None = None) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality, exif=exif if exif is not None else Image.Exif())
    return out.getvalue()


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_exif_rotated_photo_comes_out_upright():
    # An upright portrait: red top half, blue bottom half. A camera held sideways stores it rotated and
    # records orientation 6 ("rotate 90° clockwise to view").
    upright = Image.new("RGB", (600, 800), "blue")
    upright.paste((255, 0, 0), (0, 0, 600, 400))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote: 800x600, red on the left
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _jpeg(stored, exif=exif)

    info = inspect_photo(data, 512)
    assert (info.width, info.height) == (600, 800)
    square = prepare_photo(data, 512)
    assert square.size == (512, 512)
    top, bottom = square.getpixel((256, 20)), square.getpixel((256, 490))
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


@pytest.mark.parametrize(
    ("size", "resized", "box"),
    [
        # magick -thumbnail 512x512^ scales the short side to 512 (each side rounded to the nearest pixel),
        # then -gravity center -extent 512x512 keeps the middle: offset (W - 512) // 2.
        ((1000, 600), (853, 512), (170, 0, 682, 512)),
        ((600, 1000), (512, 853), (0, 170, 512, 682)),
        ((4032, 3024), (683, 512), (85, 0, 597, 512)),
        ((300, 500), (512, 853), (0, 170, 512, 682)),
        ((512, 512), (512, 512), (0, 0, 512, 512)),
        ((1001, 1000), (513, 512), (0, 0, 512, 512)),
    ],
)
def test_crop_geometry_equals_the_magick_command(size, resized, box):
    assert crop_box(*size, 512) == (resized, box)


def test_centre_crop_keeps_the_middle_of_a_wide_photo():
    # Three vertical bands; the square crop of a 3:1 picture is exactly the middle band.
    wide = Image.new("RGB", (1536, 512), "red")
    wide.paste((0, 255, 0), (512, 0, 1024, 512))
    wide.paste((0, 0, 255), (1024, 0, 1536, 512))
    square = prepare_photo(_png(wide), 512)
    assert square.getpixel((10, 256)) == (0, 255, 0)
    assert square.getpixel((501, 256)) == (0, 255, 0)


def test_undecodable_data_is_rejected_with_its_reason():
    with pytest.raises(PhotoRejected) as caught:
        inspect_photo(b"this is not a picture at all", 512)
    assert caught.value.reason == "undecodable"


def test_truncated_jpeg_is_rejected_as_undecodable(make_photo):
    data = _jpeg(make_photo(1, (600, 600)))
    with pytest.raises(PhotoRejected) as caught:
        inspect_photo(data[: len(data) // 2], 512)
    assert caught.value.reason == "undecodable"


def test_photo_under_half_the_training_resolution_is_too_small(make_photo):
    with pytest.raises(PhotoRejected) as caught:
        inspect_photo(_png(make_photo(1, (900, 255))), 512)
    assert caught.value.reason == "too_small"
    inspect_photo(_png(make_photo(1, (900, 256))), 512)  # exactly half is accepted


def test_decompression_bomb_is_refused_before_decoding():
    # A PNG header claiming a huge canvas; the pixel data would unpack to gigabytes.
    side = int(MAX_PIXELS**0.5) + 100
    bomb = Image.new("1", (side, side))
    data = io.BytesIO()
    bomb.save(data, format="PNG")
    with pytest.raises(PhotoRejected) as caught:
        inspect_photo(data.getvalue(), 512)
    assert caught.value.reason == "too_many_pixels"


def test_exact_and_near_duplicates_are_rejected_in_a_set(make_photo):
    original = make_photo(10, (640, 640))
    other = make_photo(11, (640, 640))
    near = original.resize((520, 520)).rotate(0)
    sources = [
        ("a.png", _png(original)),
        ("b.png", _png(other)),
        ("a-again.png", _png(original)),
        ("a-smaller.jpg", _jpeg(near, quality=70)),
    ]
    result = load_photo_set(sources, 512)
    assert result.names == ["a.png", "b.png"]
    assert [(r.name, r.reason) for r in result.rejected] == [
        ("a-again.png", "duplicate"),
        ("a-smaller.jpg", "near_duplicate"),
    ]
    assert all(img.size == (512, 512) for img in result.images)


def test_photo_and_token_modules_import_without_torch():
    code = "import sys, engine, engine.photos, engine.tokens; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_progressive_jpeg_repeating_one_scan_thousands_of_times_is_refused_before_decoding():
    from tests.helpers import scan_bomb

    bomb = scan_bomb(repeats=5000)
    assert jpeg_scan_count(bomb) > 5000
    with pytest.raises(PhotoRejected) as caught:
        inspect_photo(bomb, 512)
    assert caught.value.reason == "too_complex"
    # The engine's training set applies the same bound: the bomb is left out with its reason.
    kept = load_photo_set([("bomb.jpg", bomb)], 512)
    assert kept.images == [] and [r.reason for r in kept.rejected] == ["too_complex"]


def test_ordinary_progressive_and_baseline_jpegs_are_accepted(make_photo):
    picture = make_photo(4, (800, 600))
    for progressive in (False, True):
        out = io.BytesIO()
        picture.save(out, format="JPEG", progressive=progressive, quality=90)
        assert 1 <= jpeg_scan_count(out.getvalue()) <= 12
        assert inspect_photo(out.getvalue(), 512).format == "JPEG"


@pytest.mark.parametrize("fmt", ["PPM", "TGA", "TIFF", "PCX"])
def test_picture_formats_outside_the_allow_list_are_never_decoded(make_photo, fmt):
    out = io.BytesIO()
    make_photo(5, (600, 600)).save(out, format=fmt)
    with pytest.raises(PhotoRejected) as caught:
        inspect_photo(out.getvalue(), 512)
    assert caught.value.reason in ("undecodable", "unsupported")


def test_postscript_is_refused_as_a_document_and_never_handed_to_ghostscript(monkeypatch):
    from PIL import EpsImagePlugin

    from tests.helpers import eps_bytes

    def ghostscript(*args, **kwargs):
        raise AssertionError("Ghostscript was run on a user's file")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    with pytest.raises(PhotoRejected) as caught:
        inspect_photo(eps_bytes(), 512)
    assert caught.value.reason == "not_image"


def test_a_photo_with_damaged_exif_is_refused_as_damaged_not_a_crash():
    from tests.helpers import damaged_exif_jpeg

    with pytest.raises(PhotoRejected) as caught:
        inspect_photo(damaged_exif_jpeg(), 512)
    assert caught.value.reason == "undecodable"
    assert load_photo_set([("odd.jpg", damaged_exif_jpeg())], 512).rejected[0].reason == "undecodable"
