#!/usr/bin/env bash
# One prepared GPU run (issue 23): time to a model per phase and draw figures for SD1.5, SDXL and FLUX.1-dev
# shapes (random weights; speed does not depend on their values), JSON under docs/bench/. Budget: ≤ 8 minutes on one
# H100/H200; each step has its own timeout so one slow family cannot eat the others' time.
# Usage: tools/gpu_bench.sh [HOST_LABEL] [PART]   (run from the repository root, with the CUDA torch installed)
# PART: ttm (time to a model and family figures, the default), compile (eager against torch.compile'd drawing
# with LoRA hot-swap: COMPILE_DENOISER's figures), new (FLUX.2 [klein], Z-Image and Qwen-Image shapes: train
# ms/step and draw ms/image; Qwen-Image holds ~58 GB in bf16, so an 80 GB GPU) or all (three calls' worth of time).
set -u
host="${1:-$(hostname -s)}"
part="${2:-ttm}"
day="$(date -u +%Y-%m-%d)"
gpu="$(python -c 'import torch; print(torch.cuda.get_device_name(0).split()[-1].lower())' 2>/dev/null || echo gpu)"
out="docs/bench"
mkdir -p "$out"
export HF_HUB_OFFLINE=1

run() {  # seconds, file suffix, arguments of python -m engine bench
    local limit="$1" name="$2"
    shift 2
    echo "== python -m engine bench $* (≤ ${limit}s)" >&2
    timeout "$limit" python -m engine bench "$@" --out "$out/${gpu}-${host}-${day}-${name}.json" | tail -n 1
}

if [ "$part" = ttm ] || [ "$part" = all ]; then
    # Photos → ready model, recipes paper and default, cold and warm. 400 steps as for 4 photos (the CPU run's
    # setting); FLUX at fewer steps so the cold class set of the paper recipe (100 × 28 steps) fits the budget.
    run 120 ttm-sd1 --time-to-model --family sd1 --steps 400
    run 150 ttm-sdxl --time-to-model --family sdxl --steps 300
    run 180 ttm-flux --time-to-model --family flux --steps 150 --num-class-images 24
    # Draw ms/image at batch 1 and 4 with the family's default steps and sampler, training ms/step.
    run 120 families --family sd1,sdxl,flux --steps 20
fi
if [ "$part" = new ] || [ "$part" = all ]; then
    run 200 families-new --family flux2-klein,z-image --steps 10
    run 300 family-qwen --family qwen-image --steps 10
fi
if [ "$part" = compile ] || [ "$part" = all ]; then
    # Whether COMPILE_DENOISER pays: compile seconds, ms/image eager and compiled, images to earn the compile back,
    # recompiles while switching LoRAs (must be 0). Inductor compiles two graphs per model (bare, LoRA slot).
    run 180 compile-sd1 --compile --family sd1
    run 240 compile-sdxl --compile --family sdxl
    run 170 compile-flux --compile --family flux-schnell
fi
