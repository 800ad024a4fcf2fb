"""Decode with a bundle and with PyTorch side by side; print the relative logits error per step.

    python3 tools/gpu/decode_compare.py BUNDLE_DIR [BUNDLE_DIR ...] [--steps 8] [--batch 1]

Each bundle's bundle.json must carry model.config (the DecoderConfig fields) and model.seed, as
`tools/gpu/decode_compare.py --prepare` writes them (that part needs MLIR).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

from etc.models.decoder import DecoderConfig, DecoderLM, _init_random, make_kv_caches  # noqa: E402


def model_of(meta: dict) -> DecoderLM:
    fields = dict(meta["model"]["config"])
    fields["dtype"] = getattr(torch, fields["dtype"].removeprefix("torch."))
    model = DecoderLM(DecoderConfig(**fields))
    _init_random(model, meta["model"]["seed"])
    return model


def prepare(out: Path, variants: dict[str, dict]) -> None:
    import etc
    from etc.models.decoder import CONFIGS, dynamic_shapes_for, example_inputs

    for name, spec in variants.items():
        base = CONFIGS[spec.pop("base")]
        options = spec.pop("options", {})
        c = dataclasses.replace(base, **spec)
        model = DecoderLM(c)
        _init_random(model, 0)
        info = {"name": name, "seed": 0,
                "config": {f.name: (str(getattr(c, f.name)) if f.name == "dtype" else getattr(c, f.name))
                           for f in dataclasses.fields(c)}}
        etc.compile(model, example_inputs(c, batch=2, ctx=16), dynamic_shapes=dynamic_shapes_for(c),
                    out=out / name, model_info=info, **options)
        print("prepared", out / name)


def compare(path: Path, steps: int, batch: int) -> None:
    from etc.runtime import Megakernel

    meta = json.loads((path / "bundle.json").read_text())
    model = model_of(meta).cuda().eval()
    c = model.config
    context = min(c.max_context, 128)
    tokens = torch.randint(0, c.vocab_size, (batch,), generator=torch.Generator().manual_seed(0)).cuda()
    k_t, v_t = make_kv_caches(c, batch, context, device="cuda")
    k_e, v_e = make_kv_caches(c, batch, context, device="cuda")
    errors = []
    with Megakernel.from_model(path, model) as mk, torch.no_grad():
        for step in range(steps):
            positions = torch.full((batch,), step, dtype=torch.int64, device="cuda")
            lt, _, _ = model(tokens, positions, k_t, v_t)
            le, _, _ = mk(tokens, positions, k_e, v_e)
            errors.append(float((le.float() - lt.float()).norm() / lt.float().norm()))
            kerr = max(float((a.float() - b.float()).abs().max()) for a, b in zip(k_e, k_t))
            verr = max(float((a.float() - b.float()).abs().max()) for a, b in zip(v_e, v_t))
            errors[-1] = (round(errors[-1], 5), round(kerr, 4), round(verr, 4))
            tokens = lt.argmax(-1)  # both sides continue from PyTorch's token
    print(f"{path.name}: per step (logits rel, max|dk|, max|dv|): {errors}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("bundles", nargs="*")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--prepare", default=None, help="write the diagnostic variants here (needs MLIR)")
    a = p.parse_args()
    if a.prepare:
        one = dict(base="llama-3.2-1b", num_layers=1, max_context=256)
        prepare(Path(a.prepare), {
            "l1": dict(one),
            "l1-unfused": dict(one, options={"fuse": False}),
            "l1-theta1e4": dict(one, rope_theta=10000.0),
            "l1-chunk32": dict(one, options={"kv_chunk": 32}),
            "tiny-theta5e5": dict(base="tiny-llama", rope_theta=500000.0),
            "tiny-d64": dict(base="tiny-llama", head_dim=64, num_heads=8, num_kv_heads=2, hidden_size=128),
        })
        return
    for b in a.bundles:
        try:
            compare(Path(b), a.steps, a.batch)
        except Exception as e:  # report and go on to the next variant
            print(f"{Path(b).name}: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
