"""Suite-wide test setup: fully offline, no stray configuration from the developer's shell or .env."""

from __future__ import annotations

import os

# Nothing in the tests may reach a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models gain nothing from a second thread, and OpenMP threads spinning against the engine subprocesses
# the tests start slow everything down many times on a 2-core machine; child processes inherit this.
os.environ["OMP_NUM_THREADS"] = "1"
