"""Drawing from a picture and upscaling: the same model's image-to-image mode, sized by the picture."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def drawer(pipe, runtime):
    from engine.drawing import Drawer

    d = Drawer(pipe, runtime, cache_size=2)
    yield d
    d.forget_loras()


def _picture(seed: int, size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def test_a_picture_is_redrawn_in_its_own_shape_and_the_picture_matters(drawer):
    from engine.drawing import DrawRequest

    def draw(picture: Image.Image):
        return drawer.draw(DrawRequest("a photo of dog", steps=4, seeds=[3], init_image=picture, image_change=0.5))

    wide = draw(_picture(1, (96, 64)))
    width, height = wide.images[0].size
    assert width > height and (width, height) == (wide.width, wide.height)
    again, other = draw(_picture(1, (96, 64))), draw(_picture(2, (96, 64)))
    assert np.array_equal(np.asarray(wide.images[0]), np.asarray(again.images[0]))
    assert not np.array_equal(np.asarray(wide.images[0]), np.asarray(other.images[0]))


def test_the_users_lora_draws_from_a_picture_too(drawer, trained):
    from engine.drawing import DrawRequest

    def draw(lora):
        request = DrawRequest("a photo of sks dog", steps=4, seeds=[5], lora=lora, init_image=_picture(3, (64, 64)),
                              image_change=0.75)
        return np.asarray(drawer.draw(request).images[0])

    assert not np.array_equal(draw(None), draw(trained["result"].weights_path))


def test_an_upscale_is_twice_the_pictures_size(drawer):
    from engine.drawing import DrawRequest

    source = _picture(4, (64, 48))
    result = drawer.draw(DrawRequest("a photo of dog", steps=4, seeds=[9], init_image=source, image_change=0.3,
                                     upscale=True))
    assert result.images[0].size == (128, 96)


def test_a_tiny_change_still_runs_a_step(drawer):
    from engine.drawing import DrawRequest

    result = drawer.draw(DrawRequest("a photo of dog", steps=2, seeds=[1], init_image=_picture(5, (64, 64)),
                                     image_change=0.1))
    assert result.images[0].size == (64, 64)


@pytest.mark.parametrize("name", ["sd2", "sdxl", "flux", "flux-schnell", "z-image", "qwen-image"])
def test_every_drawn_family_draws_from_a_picture_and_upscales(name, family_pipe, runtime):
    from engine.drawing import Drawer, DrawRequest

    drawer = Drawer(family_pipe(name), runtime)
    side = drawer.limits.multiple
    picture = _picture(6, (side * 3, side * 2))
    redrawn = drawer.draw(DrawRequest("a photo of dog", steps=2, seeds=[2], init_image=picture, image_change=0.6))
    assert redrawn.images[0].width > redrawn.images[0].height
    bigger = drawer.draw(DrawRequest("a photo of dog", steps=2, seeds=[2], init_image=redrawn.images[0],
                                     image_change=0.3, upscale=True))
    assert bigger.images[0].size == (2 * redrawn.images[0].width, 2 * redrawn.images[0].height)


def test_flux2_klein_says_it_cannot_start_from_a_picture(family_pipe, runtime):
    """Its image input is a reference to edit by (no strength): refused with a reason, never drawn wrongly."""
    from engine.drawing import Drawer, DrawError, DrawRequest

    drawer = Drawer(family_pipe("flux2-klein"), runtime)
    assert not drawer.draws_from_pictures()
    with pytest.raises(DrawError, match="cannot draw from a picture"):
        drawer.draw(DrawRequest("a photo of dog", steps=2, seeds=[2], init_image=_picture(7, (64, 64))))
