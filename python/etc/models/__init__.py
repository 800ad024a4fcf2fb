"""Reference PyTorch models used as compiler inputs."""

from .decoder import (
    CONFIGS,
    DecoderConfig,
    DecoderLM,
    build_model,
    config_from_hf,
    dynamic_shapes_for,
    example_inputs,
    make_kv_caches,
)

__all__ = [
    "CONFIGS",
    "DecoderConfig",
    "DecoderLM",
    "build_model",
    "config_from_hf",
    "dynamic_shapes_for",
    "example_inputs",
    "make_kv_caches",
]
