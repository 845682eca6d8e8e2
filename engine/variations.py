"""Variations of a drawn picture: its seed's starting noise blended with another seed's, on the sphere (slerp)."""

from __future__ import annotations

from engine.detection import family_of
from engine.draw_request import DrawError, DrawRequest


def noise_shape(pipe, width: int, height: int) -> tuple[int, ...]:
    """The shape of one picture's starting noise as the family's pipeline lays it out (before FLUX.1 packs it)."""
    from engine.conditioning import FAMILY_MODULES, _module

    family = family_of(pipe)
    factor = pipe.vae_scale_factor
    if family.architecture in FAMILY_MODULES:
        return _module(family).noise_shape(pipe, width, height)
    if family.is_flux:
        channels = pipe.transformer.config.in_channels // 4
        return (channels, 2 * (height // (factor * 2)), 2 * (width // (factor * 2)))
    return (pipe.unet.config.in_channels, height // factor, width // factor)


def variation_latents(pipe, request: DrawRequest, seeds: list[int], width: int, height: int):
    """Starting noise for variations: seed noise and variation noise blended on the sphere (slerp), so a small
    strength keeps the picture's composition and changes its details; None for ordinary draws."""
    if not request.variation_seeds or request.variation_strength <= 0:
        return None
    import torch

    if len(request.variation_seeds) < len(seeds):
        raise DrawError("each variation needs its own variation seed")
    family = family_of(pipe)
    strength = float(request.variation_strength)  # within 0..1: the contract's limit, checked before
    shape = noise_shape(pipe, width, height)

    def noise(seed: int):
        return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(seed) % 2**32))

    blended = []
    for seed, variation in zip(seeds, request.variation_seeds, strict=False):
        a, b = noise(seed), noise(variation)
        omega = torch.arccos((a.flatten() @ b.flatten() / (a.norm() * b.norm())).clamp(-1, 1))
        if float(omega) < 1e-4:
            blended.append(a)
            continue
        sin = torch.sin(omega)
        blended.append(torch.sin((1 - strength) * omega) / sin * a + torch.sin(strength * omega) / sin * b)
    latents = torch.stack(blended)
    if family.architecture == "flux1":  # FLUX.2's pipeline packs the patchified noise itself
        from diffusers import FluxPipeline

        latents = FluxPipeline._pack_latents(latents, latents.shape[0], *latents.shape[1:])
    elif family.architecture == "qwen-image":  # Qwen-Image's takes its noise packed, as FLUX.1's
        from engine.qwen_image import pack_noise

        latents = pack_noise(latents)
    model = getattr(pipe, family.denoiser)
    return latents.to(model.device, model.dtype)
