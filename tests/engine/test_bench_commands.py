"""Every benchmark command the README documents runs here at small settings, so none can break unseen.

`python -m engine bench --time-to-model` is run by test_time_to_model.py; `python -m engine eval-toy` by tests/toy;
`python -m tools.reference_bench` by tests/engine_reference; `python -m storage bench` by tests/storage/test_bench.py.
"""

from __future__ import annotations

import json


def _bench(capsys, *args: str) -> dict:
    from engine.cli import main

    assert main(["bench", *args]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_python_m_engine_bench_without_flags_prints_its_figures(capsys):
    figures = _bench(capsys, "--steps", "3", "--draw-steps", "2")
    assert figures["model"] == "tiny (engine tiny-model)"
    assert figures["train_ms_per_step_median"] > 0
    assert figures["draw_latency_ms_idle"] > 0 and figures["draw_latency_ms_during_training"] > 0
    assert figures["command"] == "python -m engine bench --steps 3 --draw-steps 2"


def test_python_m_engine_bench_per_family_prints_each_family(capsys):
    figures = _bench(capsys, "--family", "sd1,flux-schnell", "--steps", "3")
    assert set(figures["families"]) == {"sd1", "flux-schnell"}
    assert all(f["train_ms_per_step_median"] > 0 for f in figures["families"].values())


def test_python_m_engine_bench_compile_times_both_denoisers_and_counts_no_recompile(capsys):
    """At small settings: the eager backend (tracing and guards without inductor's minute of C++ per graph)."""
    figures = _bench(capsys, "--compile", "--compile-backend", "eager", "--draw-steps", "2")
    compile = figures["compile"]
    assert compile["family"] == "sd1" and compile["backend"] == "eager"
    assert compile["eager_ms_per_image"] > 0 and compile["compiled_ms_per_image"] > 0
    assert compile["graphs_compiled"] >= 1
    assert compile["recompiles_after_warmup"] == 0  # two LoRAs of different ranks, a strength, the base model


def test_python_m_engine_bench_family_qwen_image_prints_its_figures_and_all_covers_the_qwen_families(capsys):
    from engine.bench import BENCH_FAMILIES

    figures = _bench(capsys, "--family", "qwen-image", "--steps", "3")
    qwen = figures["families"]["qwen-image"]
    assert (qwen["family"], qwen["draw_steps"]) == ("qwen-image", 50)
    assert qwen["train_ms_per_step_median"] > 0 and qwen["draw_ms_per_image_batch1"] > 0
    assert {"flux2-klein", "z-image", "qwen-image"} <= set(BENCH_FAMILIES)


def test_the_prepared_gpu_run_asks_only_for_what_the_bench_takes():
    """tools/gpu_bench.sh runs only on a lent GPU: each of its bench commands is parsed here, so a renamed flag or
    family cannot break that one chance unseen, and each part fits one 10-minute device call."""
    import re
    import shlex
    from pathlib import Path

    from engine.cli import _parser
    from engine.tiny_families import CLI_FAMILIES

    script = (Path(__file__).resolve().parents[2] / "tools" / "gpu_bench.sh").read_text()
    parts = re.findall(r'if \[ "\$part" = (\w+) \].*?\n(.*?)\nfi', script, flags=re.DOTALL)
    assert {name for name, _ in parts} == {"ttm", "new", "compile"}
    for name, body in parts:
        runs = [shlex.split(line.split("#")[0])[1:] for line in body.splitlines() if line.strip().startswith("run ")]
        assert runs, name
        assert sum(int(limit) for limit, *_ in runs) <= 600, f"part {name} exceeds one device call"
        for _, _, *args in runs:
            parsed = _parser().parse_args(["bench", *args])
            for family in (parsed.family or "sd1").split(","):
                assert family in CLI_FAMILIES, (name, family)
