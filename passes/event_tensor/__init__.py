"""Passes on event_tensor IR: verification, wait counts, fusion and tiling."""
