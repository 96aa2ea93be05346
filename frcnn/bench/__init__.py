"""Support for scripts/benchmark.py: torchvision's FasterRCNN built like ours (``baseline``) and the per-stage
breakdown read from the profiler (``stages``)."""
