"""Bundles: write/load round trip, the version check, field checks, extent expressions, sizes inference."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from etc import bundle as B
from etc.errors import EtcError

PTX = ".version 8.0\n.target sm_90a\n.address_size 64\n.visible .entry etc_megakernel()\n{\n ret;\n}\n"


def meta(**changes):
    m = {
        "num_workers": 2, "block_size": 128, "shared_bytes": 0,
        "symbols": [{"name": "batch", "min": 1, "max": 64}, {"name": "kv_len", "min": 2, "max": 4096}],
        "buffers": [
            {"name": "tokens", "role": "input", "dtype": "i64", "shape": ["batch"], "output_index": None},
            {"name": "positions", "role": "input", "dtype": "i64", "shape": ["batch"], "output_index": None},
            {"name": "k_caches.0", "role": "kv_cache", "dtype": "bf16", "shape": ["batch", "8", "kv_len", "64"],
             "output_index": 1},
            {"name": "model.embed_tokens.weight", "role": "weight", "dtype": "bf16", "shape": ["128256", "2048"],
             "output_index": None},
            {"name": "scores", "role": "workspace", "dtype": "f32", "shape": ["batch", "cdiv(kv_len, 256)"],
             "output_index": None},
            {"name": "logits", "role": "output", "dtype": "f32", "shape": ["batch", "128256"], "output_index": 0}],
        "counter_words": 70,
        "counters": [{"name": "h", "offset": 0, "words": 64},
                     {"name": "qkv", "offset": 64, "extents": [2, 3], "target": "(d0, d1)[s0] -> (s0 * 4)",
                      "symbols": ["batch"]}],
        "static_queues": {"offsets": [0, 3, 6], "entries": [0, 0, 2, 0, 1, 2]},
        "ready_queue": None,
        "tasks": [{"id": 0, "name": "embed", "kind": "gather", "schedule": "static", "grid": ["batch"]}],
        "model": {"config": "llama-3.2-1b"},
    }
    m.update(changes)
    return m


def write_json(path: Path, data) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "bundle.json").write_text(json.dumps(data))
    (path / "kernel.ptx").write_text(PTX)
    return path


# ------------------------------------------------------------------ round trip


def test_write_load_round_trip(tmp_path):
    written = B.write(tmp_path / "b", meta(), PTX)
    loaded = B.load(tmp_path / "b")
    assert loaded.ptx == PTX == written.ptx
    assert (tmp_path / "b" / "kernel.ptx").read_text() == PTX
    raw = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert raw["format"] == "etc-bundle" and raw["version"] == 1 and raw["kernel"] == "etc_megakernel"
    assert raw["ptx"] == "kernel.ptx" and raw["etc_version"]
    assert loaded.kernel == "etc_megakernel" and loaded.num_workers == 2 and loaded.block_size == 128
    assert [s.name for s in loaded.symbols] == ["batch", "kv_len"]
    assert [b.name for b in loaded.buffers] == [b["name"] for b in meta()["buffers"]]
    assert loaded.buffer("k_caches.0").itemsize == 2
    assert [b.name for b in loaded.outputs()] == ["logits", "k_caches.0"]
    assert loaded.queue_offsets == [0, 3, 6] and loaded.queue_entries == [0, 0, 2, 0, 1, 2]
    assert loaded.ready_words == 0 and loaded.counter_words == 70
    assert loaded.tasks[0].grid[0]({"batch": 5}) == 5
    assert loaded.model == {"config": "llama-3.2-1b"}
    assert B.load(tmp_path / "b" / "bundle.json").buffers == loaded.buffers  # the file works too
    assert not list((tmp_path / "b").glob(".*tmp*"))
    assert loaded.cubin is None and not (tmp_path / "b" / "kernel.cubin").exists()


def test_cubin_round_trip_and_stale_cubin(tmp_path):
    elf = b"\x7fELF\x00\x01binary\x00with NULs" + bytes(64)
    written = B.write(tmp_path / "b", meta(), PTX, elf, "sm_90a")
    loaded = B.load(tmp_path / "b")
    assert loaded.cubin == written.cubin == elf and loaded.cubin_arch == "sm_90a"
    assert json.loads((tmp_path / "b" / "bundle.json").read_text())["cubin"] == {"file": "kernel.cubin",
                                                                                 "arch": "sm_90a"}
    B.write(tmp_path / "b", meta(), PTX)  # recompiled without ptxas: the old cubin must not be used
    assert B.load(tmp_path / "b").cubin is None and not (tmp_path / "b" / "kernel.cubin").exists()
    B.write(tmp_path / "c", meta(), PTX, elf)
    (tmp_path / "c" / "kernel.cubin").unlink()
    with pytest.raises(EtcError, match="the bundle's cubin file kernel.cubin is missing$"):
        B.load(tmp_path / "c")
    (tmp_path / "c" / "kernel.cubin").write_text("not an image")
    with pytest.raises(EtcError, match=r"kernel.cubin: not a cubin \(no ELF header\)$"):
        B.load(tmp_path / "c")


def test_shapes_and_bytes(tmp_path):
    b = B.write(tmp_path, meta(), PTX)
    shapes = b.shapes({"batch": 3, "kv_len": 300})
    assert shapes["k_caches.0"] == (3, 8, 300, 64)
    assert shapes["scores"] == (3, 2)
    assert shapes["model.embed_tokens.weight"] == (128256, 2048)
    assert b.nbytes("scores", b.max_sizes()) == 64 * 16 * 4
    with pytest.raises(EtcError, match=r"^kv_len = 5000 is outside the bundle's range \[2, 4096\]$"):
        b.shapes({"batch": 3, "kv_len": 5000})
    with pytest.raises(EtcError, match="^no value for size 'kv_len'$"):
        b.shapes({"batch": 3})
    with pytest.raises(EtcError, match="^unknown size 'seq'"):
        b.shapes({"batch": 3, "kv_len": 4, "seq": 1})


def test_counters(tmp_path):
    b = B.write(tmp_path, meta(), PTX)
    assert [(c.name, c.offset, c.words, c.extents) for c in b.counters] == [("h", 0, 64, None), ("qkv", 64, 6, (2, 3))]
    assert b.counter_at(64 + 5) == ("qkv", (1, 2))  # row-major over the extents
    assert b.counter_at(3) == ("h", (3,))
    assert b.counter_at(1000) is None
    assert b.meta["counters"][1]["target"] == "(d0, d1)[s0] -> (s0 * 4)"  # kept, not interpreted


# ------------------------------------------------------------------ refusing bad bundles


def test_version_mismatch_is_refused_with_one_line(tmp_path):
    path = write_json(tmp_path / "old", dict(meta(), format="etc-bundle", version=2, etc_version="9.9",
                                             kernel="etc_megakernel", ptx="kernel.ptx"))
    with pytest.raises(EtcError) as e:
        B.load(path)
    assert str(e.value) == (f"{path / 'bundle.json'}: bundle format version 2 (written by ETC 9.9) is not "
                            "supported: this ETC reads version 1; recompile the model")


@pytest.mark.parametrize("content, message", [
    ("{", r"bundle.json: malformed JSON at line 1, column 2: "),
    ('{"format": "other"}', r"bundle.json: not an ETC bundle \(format 'other', expected 'etc-bundle'\)$"),
    ("[1, 2]", r"bundle.json: not an ETC bundle"),
])
def test_malformed_bundle_json(tmp_path, content, message):
    (tmp_path / "bundle.json").write_text(content)
    with pytest.raises(EtcError, match=message) as e:
        B.load(tmp_path)
    assert "\n" not in str(e.value)


def test_missing_files(tmp_path):
    with pytest.raises(EtcError, match="no such bundle directory$"):
        B.load(tmp_path / "nowhere")
    with pytest.raises(EtcError, match=r"not a bundle \(no bundle.json\)$"):
        B.load(tmp_path)
    B.write(tmp_path / "b", meta(), PTX)
    (tmp_path / "b" / "kernel.ptx").unlink()
    with pytest.raises(EtcError, match="the bundle's PTX file kernel.ptx is missing$"):
        B.load(tmp_path / "b")


@pytest.mark.parametrize("change, message", [
    ({"num_workers": "8"}, r"num_workers: expected an integer, got '8'"),
    ({"block_size": 0}, r"need num_workers >= 1, block_size >= 1"),
    ({"symbols": [{"name": "batch", "min": 5, "max": 1}]}, r"symbols\[0\]: bad range \[5, 1\]"),
    ({"symbols": [{"name": "cdiv", "min": 1, "max": 2}]}, r"symbols\[0\].name: 'cdiv' cannot be a symbol name"),
    ({"buffers": [{"name": "x", "role": "scratch", "dtype": "f32", "shape": []}]}, r"buffers\[0\].role: 'scratch'"),
    ({"buffers": [{"name": "x", "role": "input", "dtype": "f128", "shape": []}]}, r"buffers\[0\].dtype: 'f128'"),
    ({"buffers": [{"name": "x", "role": "input", "dtype": "f32", "shape": ["seq"]}]},
     r"buffers\[0\].shape\[0\]: extent expression 'seq': unknown name 'seq' \(known: batch, kv_len\)"),
    ({"buffers": [{"name": "x", "role": "input", "dtype": "f32", "shape": []}] * 2}, r"duplicate buffer 'x'"),
    ({"counters": [{"name": "h", "offset": 60, "words": 20}]}, r"counters\[0\]: words \[60, 80\) outside counter_words 70"),
    ({"static_queues": {"offsets": [0, 3], "entries": [0, 0, 1]}}, r"2 offsets for 2 workers"),
    ({"static_queues": {"offsets": [0, 3, 5], "entries": [0, 0, 1, 0, 1]}}, r"not \(task, first, stride\) triples"),
    ({"static_queues": {"offsets": [0, 6, 3], "entries": [0, 0, 1] * 2}}, r"must rise from 0 to 6"),
    ({"tasks": [{"id": 0, "name": "t", "kind": "k", "grid": ["__import__('os')"]}]}, r"tasks\[0\].grid\[0\]"),
    ({"ready_queue": {"words": -1}}, r"ready_queue.words: negative"),
])
def test_bad_fields_are_one_line_errors(tmp_path, change, message):
    with pytest.raises(EtcError, match=message) as e:
        B.write(tmp_path / "b", meta(**change), PTX)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "b").exists()  # checked before anything is written
    write_json(tmp_path / "c", dict(meta(**change), format="etc-bundle", version=1, kernel="etc_megakernel"))
    with pytest.raises(EtcError, match=message):
        B.load(tmp_path / "c")


def test_missing_field(tmp_path):
    m = meta()
    del m["counters"]
    with pytest.raises(EtcError, match="bundle.json: counters: missing$"):
        B.write(tmp_path, m, PTX)


# ------------------------------------------------------------------ extent expressions


@pytest.mark.parametrize("text, value", [
    ("2048", 2048), ("batch", 5), ("batch * 8 + kv_len", 140), ("kv_len // 8", 12), ("cdiv(kv_len, 8)", 13),
    ("kv_len % 8", 4), ("-batch + 10", 5), ("min(batch, kv_len)", 5), ("max(batch, 3 * 4)", 12),
    ("cdiv(cdiv(kv_len, 2), batch)", 10), (" ( batch ) ", 5), ("-7 // 2", -4),
])
def test_expressions(text, value):
    assert B.Expr(text, {"batch", "kv_len"})({"batch": 5, "kv_len": 100}) == value


def test_expression_symbol():
    assert B.Expr("batch").symbol == "batch"
    assert B.Expr("(batch)").symbol == "batch"
    assert B.Expr("batch + 0").symbol is None and B.Expr("8").symbol is None


@pytest.mark.parametrize("text, message", [
    ("__import__('os').system('true')", "only cdiv, min and max may be called"),
    ("batch.real", "Attribute is not allowed"),
    ("2 ** 10", "BinOp is not allowed"),
    ("batch / 2", "BinOp is not allowed"),
    ("1.5", "only integer constants"),
    ("True", "only integer constants"),
    ("'a'", "only integer constants"),
    ("lambda: 1", "Lambda is not allowed"),
    ("batch if batch else 1", "IfExp is not allowed"),
    ("[batch]", "List is not allowed"),
    ("batch < 2", "Compare is not allowed"),
    ("cdiv(batch)", "cdiv takes exactly two arguments"),
    ("cdiv(batch, b=2)", "cdiv takes exactly two arguments"),
    ("cdiv(*batch)", "cdiv takes exactly two arguments"),
    ("open(batch, 1)", "only cdiv, min and max may be called"),
    ("seq", "unknown name 'seq'"),
    ("cdiv", "unknown name 'cdiv'"),
    ("batch +", "is not valid syntax"),
    ("batch; 1", "is not valid syntax"),
    ("1" * 600, "longer than 500 characters"),
    (7, "must be a string"),
])
def test_expressions_reject_everything_else(text, message):
    with pytest.raises(EtcError, match=message):
        B.Expr(text, {"batch"})


def test_expression_errors_at_evaluation():
    with pytest.raises(EtcError, match=r"'kv_len // batch' divides by zero for batch=0, kv_len=4"):
        B.Expr("kv_len // batch")({"batch": 0, "kv_len": 4})
    with pytest.raises(EtcError, match="no value for 'kv_len'"):
        B.Expr("kv_len")({"batch": 1})


# ------------------------------------------------------------------ sizes inference


def bound(batch=3, kv_len=100):
    return {"tokens": (batch,), "positions": (batch,), "k_caches.0": (batch, 8, kv_len, 64)}


def test_infer_sizes(tmp_path):
    b = B.write(tmp_path, meta(), PTX)
    assert b.infer_sizes(bound()) == {"batch": 3, "kv_len": 100}
    assert b.infer_sizes(bound(64, 4096)) == {"batch": 64, "kv_len": 4096}

    class T:  # anything with .shape
        shape = (3, 8, 7, 64)
    assert b.infer_sizes({"tokens": [3], "k_caches.0": T()}) == {"batch": 3, "kv_len": 7}
    assert b.infer_sizes({"tokens": (3,)}, given={"kv_len": 9}) == {"batch": 3, "kv_len": 9}


@pytest.mark.parametrize("shapes, message", [
    (dict(bound(), positions=(4,)), r"^inconsistent sizes: batch is 3 from tokens dim 0 but 4 from positions dim 0$"),
    (bound(kv_len=5000), r"^kv_len = 5000 \(from k_caches.0 dim 2\) is outside the bundle's range \[2, 4096\]$"),
    (bound(batch=0), r"^batch = 0 \(from tokens dim 0\) is outside the bundle's range \[1, 64\]$"),
    (dict(bound(), **{"k_caches.0": (3, 8, 100)}),
     r"^k_caches.0 has 3 dimensions \(3, 8, 100\), the bundle expects 4: \(batch, 8, kv_len, 64\)$"),
    (dict(bound(), **{"k_caches.0": (3, 4, 100, 64)}),
     r"^k_caches.0 has shape \(3, 4, 100, 64\), expected \(3, 8, 100, 64\) for batch=3, kv_len=100$"),
    ({"tokens": (3,)}, r"^cannot infer size 'kv_len': no bound buffer has a dimension that is exactly 'kv_len'$"),
    (dict(bound(), extra=(1,)), r"^the bundle has no buffer 'extra'$"),
])
def test_infer_sizes_errors(tmp_path, shapes, message):
    b = B.write(tmp_path, meta(), PTX)
    with pytest.raises(EtcError, match=message):
        b.infer_sizes(shapes)


# ------------------------------------------------------------------ no MLIR on the GPU machine


def test_constants_match_the_abi():
    from etc.codegen import abi

    from etc import runtime as R

    assert (B.BUNDLE_FORMAT, B.BUNDLE_VERSION, B.KERNEL_NAME) == (abi.BUNDLE_FORMAT, abi.BUNDLE_VERSION,
                                                                 abi.KERNEL_NAME)
    assert R.PROGRESS_WORDS == abi.PROGRESS_WORDS


def test_bundle_and_runtime_import_without_mlir():
    python = Path(__file__).resolve().parents[2] / "python"
    code = ("import sys; sys.path.insert(0, %r); import etc.bundle, etc.runtime; "
            "bad = [m for m in sys.modules if 'mlir' in m or m == 'torch']; assert not bad, bad" % str(python))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
