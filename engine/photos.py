"""Photo intake for training: decode, orient, check, and square-crop user photos (torch-free: PIL + numpy)."""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

# iPhones send photos as HEIC when they go as files; Pillow reads them (and HEIF) once this opener is registered.
# AVIF is read by Pillow itself (11.3 and later).
pillow_heif.register_heif_opener()

# Telegram sends at most 2560 px a side (~6.5 MP); 40 MP leaves room for files sent as documents while refusing
# decompression bombs (a tiny file that would unpack into gigabytes) before any pixel is decoded.
MAX_PIXELS = 40_000_000
# A progressive JPEG is decoded scan by scan, each pass over the whole picture: libjpeg writes 10 scans, mozjpeg a
# few more, cameras and phones 1. A crafted file repeats a cheap scan thousands of times (a 0.4 MB file, 11 s of
# CPU); counting the scans in the header bounds the work before a pixel is decoded.
MAX_JPEG_SCANS = 64
# Two hashes this close (of 64 bits) are the same picture re-encoded, resized or lightly edited.
NEAR_DUPLICATE_BITS = 6
# The formats we decode, decided by Pillow from the file's own bytes (never its name or mime type). None of them
# calls out to another program (EPS/PS and PDF would run Ghostscript). A phone's JPEG with a depth map opens as
# MPO through the JPEG decoder.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF", "AVIF", "GIF", "BMP")

REASONS = ("undecodable", "unsupported", "not_image", "too_complex", "too_small", "too_many_pixels", "duplicate",
           "near_duplicate")

# How files of image formats we cannot decode begin: such a file is "unsupported", not damaged.
_OTHER_IMAGE_SIGNATURES = (
    b"\xff\x0a",  # JPEG XL codestream
    b"\x00\x00\x00\x0cJXL ",  # JPEG XL container
    b"\x00\x00\x00\x0cjP  ",  # JPEG 2000
    b"8BPS",  # Photoshop
    b"FUJIFILMCCD-RAW",
    b"<svg", b"<?xml",
    b"II*\x00", b"MM\x00*",  # TIFF and the camera raw files built on it
)
# Documents, not pictures (PostScript and PDF are also formats Pillow would hand to Ghostscript).
_DOCUMENT_SIGNATURES = (b"%PDF", b"%!PS", b"\xc5\xd0\xd3\xc6", b"PK\x03\x04", b"{\\rtf", b"\xd0\xcf\x11\xe0")
# ISO media files name their brand at byte 4 ("ftyp" + brand): HEIF, AVIF and their cousins.
_FTYP_IMAGE_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis",
                      b"crx ")


def _looks_like_another_image_format(data: bytes) -> bool:
    head = data[:32]
    if head[4:8] == b"ftyp" and head[8:12] in _FTYP_IMAGE_BRANDS:
        return True
    return head.lstrip().startswith(_OTHER_IMAGE_SIGNATURES)


def jpeg_scan_count(data: bytes) -> int:
    """How many scans (SOS markers) the first picture of a JPEG holds, read from its markers without decoding.

    Walks the segments (each a marker and a length) and skips each scan's entropy-coded data up to the next
    marker that is neither a stuffed 0xFF00 nor a restart marker; stops at the picture's end (EOI)."""
    scans, pos, end = 0, 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            break  # damaged: the decoder will say so
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker != 0xDA:
            continue
        scans += 1
        while True:  # the scan's entropy-coded data
            pos = data.find(b"\xff", pos)
            if pos < 0 or pos + 1 >= end:
                return scans
            following = data[pos + 1]
            if following == 0x00 or 0xD0 <= following <= 0xD7:
                pos += 2
                continue
            break
    return scans


class PhotoRejected(Exception):
    """A photo we cannot train on; `reason` is one of REASONS, the message is for logs and operators."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PhotoInfo:
    width: int  # after EXIF orientation
    height: int
    format: str
    sha256: str
    phash: int  # 64-bit difference hash of the upright picture


def open_bounded(data: bytes) -> Image.Image:
    """The picture's header read by an allowed decoder, checked so that decoding it is bounded work.

    Nothing is decoded yet (call `load()` or `draft()` first); raises PhotoRejected with the reason."""
    if data.lstrip()[:8].startswith(_DOCUMENT_SIGNATURES):
        raise PhotoRejected("not_image", "a document, not a picture")
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        if _looks_like_another_image_format(data):
            raise PhotoRejected("unsupported", "an image format we cannot decode") from None
        raise PhotoRejected("undecodable", f"not an image we can read: {exc}") from None
    except Image.DecompressionBombError as exc:  # pragma: no cover - PIL raises it for absurd headers
        raise PhotoRejected("too_many_pixels", str(exc)) from None
    width, height = image.size
    # Image.open only read the header: refuse huge pictures before decoding a single pixel.
    if width * height > MAX_PIXELS:
        raise PhotoRejected("too_many_pixels", f"{width}x{height} is over {MAX_PIXELS} pixels")
    if image.format in ("JPEG", "MPO") and (scans := jpeg_scan_count(data)) > MAX_JPEG_SCANS:
        raise PhotoRejected("too_complex", f"a JPEG of {scans} scans (at most {MAX_JPEG_SCANS})")
    return image


def _open(data: bytes) -> Image.Image:
    image = open_bounded(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except Exception as exc:  # truncated or corrupt data surfaces only when decoding
        raise PhotoRejected("undecodable", f"the image data is damaged: {exc}") from None
    return image


def _upright(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception as exc:  # a damaged EXIF block (struct.error, a bad offset…): the file is broken
        raise PhotoRejected("undecodable", f"the EXIF data is damaged: {exc}") from None


def thumbnail(data: bytes, size: int) -> Image.Image:
    """A small upright RGB picture of a photo at most `size` px a side, with the same bounds as intake.

    A JPEG decodes straight at 1/2…1/8 scale: a 40 MP photo becomes a thumbnail in milliseconds."""
    image = open_bounded(data)
    try:
        image.draft("RGB", (size, size))
        image.load()
    except Exception as exc:
        raise PhotoRejected("undecodable", f"the image data is damaged: {exc}") from None
    image = _upright(image).convert("RGB")
    image.thumbnail((size, size))
    return image


def upright_rgb(data: bytes) -> Image.Image:
    """The decoded photo turned upright by its EXIF orientation, in RGB (transparency laid on white)."""
    return _rgb(_upright(_open(data)))


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "P", "PA"):
        image = image.convert("RGBA")
        canvas = Image.new("RGB", image.size, (255, 255, 255))
        canvas.paste(image, mask=image.getchannel("A"))
        return canvas
    return image.convert("RGB")


def difference_hash(image: Image.Image) -> int:
    """A 64-bit perceptual hash: whether each pixel of a 9x8 grey thumbnail is brighter than its right neighbour."""
    small = image.convert("L").resize((9, 8), Image.Resampling.BILINEAR)
    pixels = list(small.getdata())
    bits = 0
    for row in range(8):
        for col in range(8):
            left, right = pixels[row * 9 + col], pixels[row * 9 + col + 1]
            bits = (bits << 1) | (1 if left > right else 0)
    return bits


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def inspect_photo(data: bytes, resolution: int = 512) -> PhotoInfo:
    """Cheap checks the bot runs on every incoming photo; raises PhotoRejected with the reason."""
    return _checked(data, resolution)[0]


def _checked(data: bytes, resolution: int) -> tuple[PhotoInfo, Image.Image]:
    """The checks and the upright RGB picture, from one bounded decode."""
    decoded = _open(data)
    image = _rgb(_upright(decoded))
    width, height = image.size
    minimum = resolution // 2
    if min(width, height) < minimum:
        raise PhotoRejected("too_small", f"{width}x{height} is under {minimum} px on its short side")
    info = PhotoInfo(width=width, height=height, format=decoded.format or "unknown",
                     sha256=hashlib.sha256(data).hexdigest(), phash=difference_hash(image))
    return info, image


def crop_box(width: int, height: int, size: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Where ImageMagick's `-thumbnail SxS^ -gravity center -extent SxS` puts things.

    Returns (resized width and height, crop box in the resized picture). `^` scales so the short side becomes
    S, rounding each side to the nearest pixel; a centred extent then drops (W - S) // 2 pixels on the left/top.
    """
    scale = max(size / width, size / height)
    new_w = max(size, int(width * scale + 0.5))
    new_h = max(size, int(height * scale + 0.5))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return (new_w, new_h), (left, top, left + size, top + size)


@dataclass(frozen=True)
class CropGeometry:
    """Where a training square came from: SDXL conditions on it (the recipe's original_size and crop top-left).

    `original_size` is the upright photo's (height, width) before resizing; `crop_top_left` is (top, left) of the
    square in the resized picture, the coordinates diffusers' SDXL recipe records for its centre crop.
    """

    original_size: tuple[int, int]
    crop_top_left: tuple[int, int]

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (*self.original_size, *self.crop_top_left)


# The key under which a squared photo carries its CropGeometry in `Image.info` (kept in memory, never saved).
GEOMETRY_KEY = "kabina_crop"


def square_photo(image: Image.Image, size: int) -> Image.Image:
    """Centre-crop and resize an upright RGB photo to size x size (the magick geometry above).

    The result carries its CropGeometry in `image.info[GEOMETRY_KEY]`, so training can condition SDXL on it.
    """
    (new_w, new_h), box = crop_box(image.width, image.height, size)
    resized = image.resize((new_w, new_h), Image.Resampling.LANCZOS, reducing_gap=3.0)
    square = resized.crop(box)
    square.info[GEOMETRY_KEY] = CropGeometry((image.height, image.width), (box[1], box[0]))
    return square


def crop_geometry(image: Image.Image) -> CropGeometry:
    """The geometry a squared photo carries; a picture that was never cropped is its own original."""
    found = image.info.get(GEOMETRY_KEY)
    if isinstance(found, CropGeometry):
        return found
    return CropGeometry((image.height, image.width), (0, 0))


def prepare_photo(data: bytes, size: int) -> Image.Image:
    """Decode, orient, check and square one training photo."""
    return square_photo(_checked(data, size)[1], size)


@dataclass(frozen=True)
class Rejection:
    name: str
    reason: str
    message: str


@dataclass
class PhotoSet:
    """The usable training photos of one request, squared to the training resolution, and what was left out."""

    images: list[Image.Image]
    names: list[str]
    rejected: list[Rejection]

    @property
    def geometry(self) -> list[CropGeometry]:
        """Each kept photo's original size and crop offsets (SDXL's size conditioning)."""
        return [crop_geometry(image) for image in self.images]


def load_photo_set(sources: Iterable[tuple[str, bytes]], size: int) -> PhotoSet:
    """Check a whole set: each photo alone, then against the ones kept before it (exact and near duplicates)."""
    kept: list[tuple[str, PhotoInfo, Image.Image]] = []
    rejected: list[Rejection] = []
    for name, data in sources:
        try:
            info, image = _checked(data, size)
            for other_name, other, _ in kept:
                if other.sha256 == info.sha256:
                    raise PhotoRejected("duplicate", f"the same file as {other_name}")
                if hamming(other.phash, info.phash) <= NEAR_DUPLICATE_BITS:
                    raise PhotoRejected("near_duplicate", f"nearly the same picture as {other_name}")
            kept.append((name, info, square_photo(image, size)))
        except PhotoRejected as exc:
            rejected.append(Rejection(name, exc.reason, str(exc)))
    return PhotoSet(images=[k[2] for k in kept], names=[k[0] for k in kept], rejected=rejected)


def load_photo_folder(folder: str | Path, size: int) -> PhotoSet:
    paths = sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))
    return load_photo_set(((p.name, p.read_bytes()) for p in paths), size)
