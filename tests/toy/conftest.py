"""One DreamBooth experiment in the toy world at every training seed, shared by the tests that judge it (the slow part)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.toy.evaluation import TOY_MODEL_DIR, ToyEvalConfig, ToyEvalResult, load_toy_pipeline, run_toy_eval


@pytest.fixture(scope="session")
def toy_pipe():
    import torch

    if not (TOY_MODEL_DIR / "model_index.json").is_file():
        pytest.fail(f"the toy model fixture is missing: python -m tools.toy build {TOY_MODEL_DIR}")
    # One thread, as tools.toy.build explains: on a busy 2-core runner a second OpenMP thread costs far more
    # than it gives. Restored afterwards so the rest of the suite runs as it would without these tests.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_toy_pipeline(TOY_MODEL_DIR)
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def toy_work_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("toy_dreambooth")


@pytest.fixture(scope="session")
def toy_eval(toy_pipe, toy_work_dir) -> ToyEvalResult:
    """Four photos of an orange dog trained at each seed of ToyEvalConfig, with and without prior preservation."""
    pipe, runtime = toy_pipe
    return run_toy_eval(ToyEvalConfig(), work_dir=toy_work_dir, pipe=pipe, runtime=runtime)
