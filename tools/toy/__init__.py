"""A toy world in which DreamBooth can be measured on a CPU: synthetic classes, a small base model trained on them, metrics."""
