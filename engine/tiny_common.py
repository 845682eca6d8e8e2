"""What every tiny test model shares, whatever its family: its picture size and the notice written beside it.

Its own module so the other families' tiny models (engine.tiny_families) need nothing of engine.tiny_model,
which hands them every family but SD1.
"""

from __future__ import annotations

TINY_RESOLUTION = 64

NOTICE = (
    "This is Kabina's tiny test model: about a million random weights shaped like Stable Diffusion.\n"
    "It loads and runs like the real thing, but everything it draws is noise. Use it for tests and demos only.\n"
)
