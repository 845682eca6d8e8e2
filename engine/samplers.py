"""Sampler names users know (A1111's) → diffusers schedulers built from the model's own scheduler config.

The mapping follows diffusers' scheduler documentation (its A1111/k-diffusion equivalence table):
  dpm++2m-karras  DPMSolverMultistepScheduler, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas
  euler-a         EulerAncestralDiscreteScheduler
  euler           EulerDiscreteScheduler (FLUX: FlowMatchEulerDiscreteScheduler)
  ddim            DDIMScheduler
  dpm++2m (FLUX)  DPMSolverMultistepScheduler in flow-matching form: use_flow_sigmas, prediction_type
                  "flow_prediction", dynamic shifting (FluxPipeline hands it `mu`)
  default         the model's own scheduler, exactly as it came
Each is built with from_config(the model's own config), so beta schedule, prediction type (v for SD2-768) and
shift carry over; a sampler is installed only for one call and the model's own put back afterwards.
"""

from __future__ import annotations

import contextlib
from typing import Any

from engine.detection import family_of


class UnknownSampler(ValueError):
    """A sampler the family cannot use; the message lists the ones it can."""


def own_scheduler_config(pipe) -> dict[str, Any]:
    """The scheduler config the model came with (kept at first use: a sampler swap never changes it)."""
    config = getattr(pipe, "_kabina_scheduler_config", None)
    if config is None:
        config = dict(pipe.scheduler.config)
        pipe._kabina_scheduler_config = config
        pipe._kabina_scheduler_class = type(pipe.scheduler).__name__
    return dict(config)


def make_scheduler(pipe, name: str):
    """A fresh scheduler for sampler `name` on this pipeline's family (UnknownSampler if it has none such)."""
    import diffusers

    family = family_of(pipe)
    config = own_scheduler_config(pipe)
    name = (name or "default").lower()
    if name not in family.samplers:
        raise UnknownSampler(f"{family.title} cannot sample with {name!r}; choose one of: {', '.join(family.samplers)}")
    if name == "default":
        return getattr(diffusers, pipe._kabina_scheduler_class).from_config(config)
    if family.is_flux:
        if name == "euler":
            return diffusers.FlowMatchEulerDiscreteScheduler.from_config(config)
        # DPM-Solver++ 2M on flow sigmas; FluxPipeline computes the resolution-dependent shift `mu` and passes
        # it to set_timesteps, which sets flow_shift = exp(mu) (the same shift the Euler sampler applies).
        return diffusers.DPMSolverMultistepScheduler(
            num_train_timesteps=int(config.get("num_train_timesteps", 1000)), algorithm_type="dpmsolver++",
            solver_order=2, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=float(config.get("shift", 1.0)),
            use_dynamic_shifting=True, time_shift_type="exponential",
        )
    if name == "dpm++2m-karras":
        return diffusers.DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True
        )
    if name == "euler-a":
        return diffusers.EulerAncestralDiscreteScheduler.from_config(config)
    if name == "euler":
        return diffusers.EulerDiscreteScheduler.from_config(config)
    if name == "ddim":
        return diffusers.DDIMScheduler.from_config(config)
    raise UnknownSampler(f"no scheduler for sampler {name!r}")  # pragma: no cover - every family name is mapped


@contextlib.contextmanager
def using_sampler(pipe, name: str | None):
    """Install sampler `name` (None: the model's own) for the duration of one pipeline call."""
    own_scheduler_config(pipe)
    if name is None:
        yield pipe.scheduler
        return
    original = pipe.scheduler
    pipe.scheduler = make_scheduler(pipe, name)
    try:
        yield pipe.scheduler
    finally:
        pipe.scheduler = original
