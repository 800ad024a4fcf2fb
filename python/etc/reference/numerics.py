"""Element types on the CPU: how each MLIR element type is stored in numpy and rounded.

bf16 and f16 are emulated: their buffers are float32 arrays holding representable values, and every
op that PyTorch would round rounds through `rounder(etype)`. Integers are stored at their width.
"""
from __future__ import annotations

import math

import numpy as np

from etc.errors import EtcError

_STORAGE = {
    "bf16": np.float32, "f16": np.float32, "f32": np.float32, "f64": np.float64,
    "i1": np.bool_, "i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64, "index": np.int64,
}
FLOAT_TYPES = ("bf16", "f16", "f32", "f64")
INT_WIDTHS = {"i1": 1, "i8": 8, "i16": 16, "i32": 32, "i64": 64, "index": 64}


def storage_dtype(etype: str) -> np.dtype:
    try:
        return np.dtype(_STORAGE[etype])
    except KeyError:
        raise EtcError(f"element type '{etype}' is not supported by the reference executor") from None


def round_bf16(x) -> np.ndarray:
    """Round to the nearest bf16 (ties to even) through the float32 bit pattern; NaN stays NaN, inf stays inf.

    Returns float32 holding bf16 values, the shape of x.
    """
    x = np.asarray(x, dtype=np.float32)
    flat = np.atleast_1d(x).astype(np.float32, copy=True)
    bits = flat.view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    # NaN payloads could carry into the sign bit: keep NaN (quiet, same sign) instead.
    nan = np.isnan(flat)
    rounded = np.where(nan, (bits & np.uint32(0xFFFF0000)) | np.uint32(0x00400000), rounded)
    return rounded.view(np.float32).reshape(x.shape)


def round_f16(x) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


def rounder(etype: str):
    """The function that rounds f32 (or f64) values to `etype` and returns them in its storage dtype."""
    if etype == "bf16":
        return round_bf16
    if etype == "f16":
        return round_f16
    dtype = storage_dtype(etype)
    return lambda x: np.asarray(x).astype(dtype)


def f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def silu(x) -> np.ndarray:
    x = f32(x)
    with np.errstate(over="ignore"):
        return x / (np.float32(1) + np.exp(-x))


_erf = np.vectorize(math.erf, otypes=[np.float64])


def erf(x) -> np.ndarray:
    """erf of f32 values, to f32 (numpy has none; math.erf is accurate in f64)."""
    return _erf(np.asarray(x, dtype=np.float64)).astype(np.float32)


def gelu(x, approximate: str = "none") -> np.ndarray:
    """torch.nn.functional.gelu in f32 (computed in f64, then rounded to f32)."""
    h = np.asarray(x, dtype=np.float64)
    if approximate == "tanh":
        out = 0.5 * h * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h ** 3)))
    elif approximate == "none":
        out = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))
    else:
        raise EtcError(f"gelu approximate must be 'none' or 'tanh', got '{approximate}'")
    return out.astype(np.float32)


def cos_sin(e) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of f32 angles, correctly rounded to f32 (via f64), like torch's f32 cos/sin up to an ulp."""
    h = np.asarray(e, dtype=np.float64)
    return np.cos(h).astype(np.float32), np.sin(h).astype(np.float32)
