"""A per-tile cost model for scheduling: bytes moved and flops of one tile, turned into microseconds.

A tile's bytes are the parts of its operand buffers that it touches (tiles.regions, refined where a
tile reads less than the region the front end joins on, e.g. a linear tile's weight rows), at
concrete sizes. Its flops come from its kind. A tile takes

    time_us = tile_overhead_us + max(bytes / (hbm_bytes_per_s / num_sms), flops / (flops_per_s / num_sms))

i.e. every worker gets a fair share of the memory bandwidth and of the tensor throughput (a decode
step keeps all SMs busy), plus a fixed cost for waiting, signalling and dispatch.

Schedules are chosen at representative sizes: batch = 1 and every other symbolic size (kv_len) at
min(max, 1024), clamped to the declared range, unless the caller overrides them.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Mapping

from etc import tiles
from etc.errors import EtcError
from etc.sm_task_ir import Buffer, Dim, Task

REPRESENTATIVE_BATCH = 1
REPRESENTATIVE_OTHER = 1024

# Reads whose tile part is a slice of rows [cols of the tile] of a [N, K] (or [N]) buffer.
_LINEAR_ROW_SLICED = ("weight", "up_weight", "bias", "up_bias")


@dataclasses.dataclass(frozen=True)
class Machine:
    """An H200-class GPU (defaults): the numbers only need to be right relative to each other."""
    num_sms: int = 132
    hbm_bytes_per_s: float = 4.8e12
    flops_per_s: float = 989e12  # dense bf16 tensor cores
    tile_overhead_us: float = 0.5


@dataclasses.dataclass(frozen=True)
class TileCost:
    bytes: float
    flops: float

    def time_us(self, machine: Machine) -> float:
        memory = self.bytes / (machine.hbm_bytes_per_s / machine.num_sms)
        compute = self.flops / (machine.flops_per_s / machine.num_sms)
        return machine.tile_overhead_us + 1e6 * max(memory, compute)


def parse_sizes(text: str) -> dict[str, int]:
    """'batch=1,kv_len=1024' -> {'batch': 1, 'kv_len': 1024}; EtcError on malformed text."""
    sizes = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, eq, value = item.partition("=")
        if not eq or not name.strip() or not value.strip().isdigit():
            raise EtcError(f"malformed size '{item}': write name=value, e.g. batch=1,kv_len=1024")
        sizes[name.strip()] = int(value)
    return sizes


def representative_sizes(dims: list[Dim], overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """The sizes schedules are tuned for: batch=1, others min(max, 1024), each clamped to its range."""
    overrides = dict(overrides or {})
    unknown = set(overrides) - {d.name for d in dims}
    if unknown:
        raise EtcError(f"no symbolic size named {', '.join(sorted(unknown))} (known: "
                       f"{', '.join(d.name for d in dims) or 'none'})")
    sizes = {}
    for d in dims:
        if d.name in overrides:
            if not d.min <= overrides[d.name] <= d.max:
                raise EtcError(f"size {d.name}={overrides[d.name]} is outside its range [{d.min}, {d.max}]")
            sizes[d.name] = overrides[d.name]
        else:
            value = REPRESENTATIVE_BATCH if d.name == "batch" else REPRESENTATIVE_OTHER
            sizes[d.name] = min(max(value, d.min), d.max)
    return sizes


def element_bytes(element_type: str) -> int:
    """Bytes per element of a scalar type written like 'bf16', 'f32', 'i64', 'i1', 'index'."""
    if element_type == "index":
        return 8
    match = re.fullmatch(r"[a-z]+(\d+)[a-z0-9]*", element_type)
    if not match:
        return 4  # an unusual type: any small constant keeps estimates sensible
    return max(1, math.ceil(int(match.group(1)) / 8))


def tile_cost(task: Task, buffers: Mapping[str, Buffer], sizes: Mapping[str, int]) -> TileCost:
    """Bytes and flops of one tile of `task` at `sizes`."""
    tiles_count = max(task.tile_count(sizes), 1)
    read_roles = task.params.get("read_roles") or []
    write_roles = task.params.get("write_roles") or []
    total_bytes = 0.0
    read = written = 0.0
    linear_weight = 0.0  # elements of the weight rows a linear tile multiplies
    for names, roles, is_write in ((task.reads, read_roles, False), (task.writes, write_roles, True)):
        for i, name in enumerate(names):
            buf = buffers[name]
            shape = buf.shape(sizes)
            role = roles[i] if i < len(roles) else None
            elems = _tile_elements(task, role, shape, tiles_count)
            total_bytes += elems * element_bytes(buf.element_type)
            if is_write:
                written += elems
            else:
                read += elems
            if task.kind == "linear" and role in ("weight", "up_weight"):
                linear_weight += elems
    return TileCost(total_bytes, _flops(task, sizes, buffers, read, written, linear_weight))


def _tile_elements(task: Task, role: str | None, shape: tuple[int, ...], tiles_count: int) -> float:
    """Elements of one operand buffer (of `shape`) that one tile touches."""
    whole = math.prod(shape)
    if role is None:
        return whole / tiles_count  # no role known: an equal share
    params = task.params
    if task.kind == "linear" and role in _LINEAR_ROW_SLICED:
        return min(params.get("tile_n", shape[0]), shape[0]) * math.prod(shape[1:])
    if task.kind == "embedding" and role == "weight":
        return math.prod(shape[1:])  # one row per token
    try:
        region = tiles.regions(task.kind, params, role, len(shape))
    except (KeyError, TypeError, IndexError, ValueError, ZeroDivisionError):
        return whole / tiles_count
    elems = 1
    for part, extent in zip(region, shape):
        if isinstance(part, tiles.Tiled):
            elems *= min(part.size, extent) / part.share
        elif isinstance(part, tiles.Anywhere):
            elems *= 1
        else:
            elems *= extent
    return elems


def _flops(task: Task, sizes: Mapping[str, int], buffers: Mapping[str, Buffer], read: float, written: float,
           linear_weight: float) -> float:
    params = task.params
    if task.kind == "linear":
        rows = _rows(task, buffers, sizes)
        return 2.0 * rows * linear_weight + 10.0 * written
    if task.kind == "attention_partial":
        group = params.get("num_heads", 1) // max(params.get("num_kv_heads", 1), 1)
        chunk, head_dim = params.get("kv_chunk", 1), params.get("head_dim", 1)
        return 4.0 * group * chunk * head_dim + 5.0 * group * chunk  # q.k, p.v, exp
    if task.kind == "attention_merge":
        return 3.0 * read  # rescale and sum every partial
    return 5.0 * written  # norms, rope, elementwise: a few flops per element written


def _rows(task: Task, buffers: Mapping[str, Buffer], sizes: Mapping[str, int]) -> int:
    """Rows (tokens) a linear tile multiplies: the leading extent of its first read (x)."""
    if not task.reads:
        return 1
    shape = buffers[task.reads[0]].shape(sizes)
    return shape[0] if len(shape) > 1 else 1
