"""The class-image cache: shared per (base model, prompt, resolution), generated once, topped up."""

from __future__ import annotations

import shutil


def _generated(reports: list[dict]) -> int:
    return max((r["step"] for r in reports), default=0) - (reports[0]["step"] if reports else 0)


def test_second_training_of_the_same_class_generates_nothing_new(pipe, tmp_path):
    from engine.class_images import ensure_class_images

    first: list[dict] = []
    paths = ensure_class_images(pipe, tmp_path, "a photo of dog", 3, 64, steps=2, on_progress=first.append)
    stamps = {p: p.stat().st_mtime_ns for p in paths}
    assert _generated(first) == 3

    second: list[dict] = []
    again = ensure_class_images(pipe, tmp_path, "a photo of dog", 3, 64, steps=2, on_progress=second.append)
    assert again == paths
    assert _generated(second) == 0
    assert {p: p.stat().st_mtime_ns for p in again} == stamps


def test_a_larger_count_only_tops_up(pipe, tmp_path):
    from engine.class_images import ensure_class_images

    small = ensure_class_images(pipe, tmp_path, "a photo of dog", 2, 64, steps=2)
    before = {p.name: p.read_bytes() for p in small}
    stamps = {p.name: p.stat().st_mtime_ns for p in small}
    reports: list[dict] = []
    large = ensure_class_images(pipe, tmp_path, "a photo of dog", 4, 64, steps=2, on_progress=reports.append)
    assert len(large) == 4
    assert reports[0]["step"] == 2 and reports[-1]["step"] == 4
    assert {p.name: p.stat().st_mtime_ns for p in large[:2]} == stamps
    assert {p.name: p.read_bytes() for p in large[:2]} == before


def test_topped_up_cache_equals_one_filled_at_once(pipe, tmp_path):
    from engine.class_images import ensure_class_images

    stepwise = ensure_class_images(pipe, tmp_path / "a", "a photo of cat", 1, 64, steps=2, batch_size=1)
    stepwise = ensure_class_images(pipe, tmp_path / "a", "a photo of cat", 3, 64, steps=2, batch_size=1)
    at_once = ensure_class_images(pipe, tmp_path / "b", "a photo of cat", 3, 64, steps=2, batch_size=1)
    assert [p.read_bytes() for p in stepwise] == [p.read_bytes() for p in at_once]


def test_another_base_model_or_resolution_does_not_reuse_the_cache(tiny_model_dir, tmp_path):
    from engine.base_model import base_model_key
    from storage.keys import class_images_prefix

    other_model = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other_model)
    weights = next((other_model / "unet").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # another model: other weights (a copy of the same model keeps the key)
    weights.write_bytes(bytes(data))
    key, other_key = base_model_key(tiny_model_dir), base_model_key(other_model)
    assert key != other_key
    assert base_model_key(tiny_model_dir) == key  # stable for the same model

    home = class_images_prefix(key, "a photo of dog", 64)
    assert class_images_prefix(key, "a photo of dog", 64) == home
    assert class_images_prefix(other_key, "a photo of dog", 64) != home
    assert class_images_prefix(key, "a photo of dog", 128) != home
    assert class_images_prefix(key, "a photo of cat", 64) != home


def test_the_cache_key_holds_the_scheduler_and_the_class_image_recipe(tiny_model_dir, tmp_path):
    import json
    import os

    from engine.base_model import base_model_key

    key = base_model_key(tiny_model_dir)
    assert base_model_key(tiny_model_dir, class_steps=25, class_guidance=7.5, class_sampler="default") == key
    assert base_model_key(tiny_model_dir, class_steps=30) != key
    assert base_model_key(tiny_model_dir, class_guidance=5.0) != key
    assert base_model_key(tiny_model_dir, class_sampler="euler-a") != key
    # Same files of the same size and time, another scheduler setting: another cache.
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    config = other / "scheduler" / "scheduler_config.json"
    before, stat = base_model_key(other), config.stat()
    settings = json.loads(config.read_text())
    assert settings["steps_offset"] == 1
    config.write_text(config.read_text().replace('"steps_offset": 1', '"steps_offset": 0'))
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert config.stat().st_size == stat.st_size
    assert base_model_key(other) != before


def test_a_folder_filled_one_way_refuses_pictures_drawn_another_way(pipe, tmp_path):
    import pytest

    from engine.class_images import ClassImageMismatch, ensure_class_images

    ensure_class_images(pipe, tmp_path, "a photo of dog", 1, 64, steps=2)
    with pytest.raises(ClassImageMismatch):
        ensure_class_images(pipe, tmp_path, "a photo of dog", 2, 64, steps=3)
    assert len(ensure_class_images(pipe, tmp_path, "a photo of dog", 2, 64, steps=2)) == 2
def test_a_cached_class_image_that_does_not_decode_is_drawn_again(pipe, tmp_path):
    from engine.class_images import ensure_class_images

    paths = ensure_class_images(pipe, tmp_path, "a photo of dog", 3, 64, steps=2, batch_size=1)
    good = paths[1].read_bytes()
    paths[1].write_bytes(good[: len(good) // 3])  # a disk error or an old crash cut it short
    again = ensure_class_images(pipe, tmp_path, "a photo of dog", 3, 64, steps=2, batch_size=1)
    assert _decodes(again[1])  # a training opens every one of them
    assert again[1].read_bytes() == good  # drawn again from its own seed


def _decodes(path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
    except OSError:
        return False
    return True
