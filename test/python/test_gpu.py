"""On a GPU: compiled megakernels decode like PyTorch (greedy tokens for 32 steps, logits within 1e-2).

Skipped without CUDA. The GPU machine has no MLIR, so bundles come prebuilt from $ETC_GPU_BUNDLES
(made where MLIR is installed with `etc compile --model NAME --out DIR/NAME.static`); with MLIR present and no
such directory, the test compiles them itself. Results go to $ETC_GPU_RESULTS (a JSON lines file) when set.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from etc.models.decoder import CONFIGS, build_model, make_kv_caches

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

STEPS = 32
MODELS = ["tiny-llama", "tiny-qwen3", "tiny-gpt", "llama-3.2-1b"]
SCHEDULES = ["static", "dynamic"]


def bundle_dir(name: str, schedule: str, tmp_root: Path) -> Path:
    base = os.environ.get("ETC_GPU_BUNDLES")
    if base:
        path = Path(base) / f"{name}.{schedule}"
        if not path.exists():
            pytest.skip(f"no prebuilt bundle {path}")
        return path
    pytest.importorskip("mlir", reason="no prebuilt bundles ($ETC_GPU_BUNDLES) and no MLIR to compile them")
    from etc.cli import compile_reference

    return compile_reference(name, tmp_root / f"{name}.{schedule}", schedule=schedule)


def record(row: dict) -> None:
    path = os.environ.get("ETC_GPU_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("name", MODELS)
def test_greedy_decode_matches_pytorch(name, batch, schedule, tmp_path_factory):
    """ETC and PyTorch (bf16) each decode greedily for 32 steps; an f32 PyTorch copy fed PyTorch's tokens
    measures how far each bf16 implementation is from exact arithmetic."""
    from etc.runtime import Megakernel

    path = bundle_dir(name, schedule, tmp_path_factory.mktemp("bundles"))
    c = CONFIGS[name]
    model = build_model(name, seed=0).cuda().eval()
    exact = build_model(name, seed=0).cuda().eval().float()
    context = min(c.max_context, 128)
    g = torch.Generator().manual_seed(batch)
    tokens_t = torch.randint(0, c.vocab_size, (batch,), generator=g).cuda()
    tokens_e = tokens_t.clone()
    k_t, v_t = make_kv_caches(c, batch, context, device="cuda")
    k_e, v_e = make_kv_caches(c, batch, context, device="cuda")
    k_x, v_x = make_kv_caches(c, batch, context, device="cuda", dtype=torch.float32)
    row = {"test": "greedy_decode", "model": name, "batch": batch, "schedule": schedule, "steps": STEPS}
    worst = torch_vs_exact = etc_vs_exact = 0.0
    mismatch = None
    with Megakernel.from_model(path, model) as mk, torch.no_grad():
        t0 = time.perf_counter()
        for step in range(STEPS):
            positions = torch.full((batch,), step, dtype=torch.int64, device="cuda")
            logits_x, _, _ = exact(tokens_t, positions, k_x, v_x)
            logits_t, _, _ = model(tokens_t, positions, k_t, v_t)
            logits_e, _, _ = mk(tokens_e, positions, k_e, v_e)
            assert torch.isfinite(logits_e).all(), f"step {step}: non-finite logits"
            torch_vs_exact = max(torch_vs_exact, rel(logits_t, logits_x))
            if mismatch is None:  # both sides still decode the same tokens: errors are comparable
                worst = max(worst, rel(logits_e, logits_t))
                etc_vs_exact = max(etc_vs_exact, rel(logits_e, logits_x))
            next_t, next_e = logits_t.argmax(-1), logits_e.argmax(-1)
            if mismatch is None and not torch.equal(next_t, next_e):
                mismatch = step
            tokens_t, tokens_e = next_t, next_e
        torch.cuda.synchronize()
        row["seconds"] = round(time.perf_counter() - t0, 3)
    row.update(max_rel_logits_vs_torch_bf16=worst, first_token_mismatch=mismatch,
               torch_bf16_vs_f32=torch_vs_exact, etc_vs_f32=etc_vs_exact,
               passed=worst < 1e-2 and mismatch is None)
    record(row)
    assert mismatch is None, (f"greedy tokens differ from PyTorch at step {mismatch} (PyTorch bf16 itself is "
                              f"{torch_vs_exact:.3g} from f32; ETC {etc_vs_exact:.3g})")
    assert worst < 1e-2, f"logits differ from PyTorch: max |d|/|ref| = {worst:.3g}"
