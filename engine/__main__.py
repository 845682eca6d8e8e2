"""`python -m engine [worker|train|draw|tiny-model|bench]`: the engine's command line."""

from __future__ import annotations

import sys

from engine.cli import main

if __name__ == "__main__":
    sys.exit(main())
