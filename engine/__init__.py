"""Kabina's engine: DreamBooth-LoRA training and drawing with diffusers (torch is imported lazily, per module)."""
