"""etc.bench: the bytes a step must read, the report, and a clear error without a GPU."""
import pytest
import torch

from etc import bench, cli
from etc.models.decoder import CONFIGS


@pytest.mark.parametrize("name,gigabytes", [("qwen3-0.6b", 1.31), ("llama-3.2-1b", 2.51), ("qwen3-8b", 16.5)])
def test_step_bytes_match_the_anchor_table(name, gigabytes):
    # ../shared/ANCHORS.md: weights + KV at batch 1, context 1024, bf16
    assert round(bench.step_bytes(CONFIGS[name], 1, 1024) / 1e9, 2 if gigabytes < 10 else 1) == gigabytes


def test_kv_bytes_grow_with_batch_and_context():
    c = CONFIGS["llama-3.2-1b"]
    per_slot = c.num_layers * 2 * c.num_kv_heads * c.head_dim * 2
    assert bench.step_bytes(c, 4, 1024) - bench.step_bytes(c, 1, 1024) == 3 * 1024 * per_slot
    assert bench.step_bytes(c, 1, 2048) - bench.step_bytes(c, 1, 1024) == 1024 * per_slot


def test_table_reports_floor_fraction_and_speedups():
    row = dict.fromkeys(bench.ROW_KEYS)
    row.update(model="llama-3.2-1b", batch=1, ctx=1024, etc_ms=0.8, eager_ms=9.6, cudagraph_ms=2.0, compile_ms=1.6,
               floor_ms=0.6)
    text = bench.table([row])
    assert "75%" in text and "12.00x" in text and "2.50x" in text and "2.00x" in text
    failed = dict(row, etc_ms=None, bundle="b512", etc_error="the kernel has 132 workers but ...")
    text = bench.table([row, failed])
    assert text.splitlines()[-1] == "llama-3.2-1b b512 batch 1: the kernel has 132 workers but ..."


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_bench_without_a_gpu_is_a_one_line_error(capsys):
    assert cli.main(["bench", "--model", "tiny-llama"]) == 1
    assert capsys.readouterr().err.strip() == "etc: error: etc bench needs a CUDA GPU; none is visible to PyTorch"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_profile_without_a_gpu_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["profile", "--bundle", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == "etc: error: profile needs a CUDA GPU; none is visible to PyTorch"


def test_spread_is_the_10th_and_90th_percentile():
    assert bench.spread([1.0 + i * 0.01 for i in range(100)]) == [1.091, 1.899]
    assert bench.spread([2.0] * 100) == [2.0, 2.0]


def test_instances_run_round_robin_and_report_the_median_of_their_medians():
    """Each bundle is loaded `instances` times, alternating between bundles; its row takes the median of
    the instance medians, the spread of all steps and the worst accuracy; a failing bundle gets its first
    error and does not stop the others."""
    calls, medians = [], {"a": iter([2.0, 1.0, 4.0]), "b": iter([3.0, 3.5, 3.25])}

    def measure(path):
        calls.append(path)
        if path == "bad":
            raise bench.EtcError(f"bundle {path} does not load\ndetails")
        m = next(medians[path])
        return {"etc_rel_err": m / 100, "image": "cubin"}, [m - 0.5, m, m + 0.5]

    rows = bench.measure_instances(["a", "bad", "b"], 3, measure)
    assert calls == ["a", "bad", "b", "a", "b", "a", "b"]
    assert rows["a"]["etc_ms"] == 2.0 and rows["a"]["etc_instances_ms"] == [2.0, 1.0, 4.0]
    assert rows["b"]["etc_ms"] == 3.25 and rows["b"]["etc_rel_err"] == 0.035
    assert rows["a"]["etc_spread_ms"] == bench.spread([0.5, 1.0, 1.5, 1.5, 2.0, 2.5, 3.5, 4.0, 4.5])
    assert rows["bad"] == {"etc_ms": None, "etc_error": "bundle bad does not load"}


def test_a_hung_step_stops_every_later_measurement():
    """A step that hangs (the watchdog's StepTimeout) may leave its kernel running on the GPU: the hung
    bundle gets its error, and no bundle or instance runs after it, each saying why."""
    from etc.runtime import StepTimeout
    calls = []

    def measure(path):
        calls.append(path)
        if path == "hangs":
            raise StepTimeout("step 1 did not finish within 10 s; 132 of 132 workers are stuck\nworker 0 ...")
        return {"image": "cubin"}, [1.0, 1.0]

    rows = bench.measure_instances(["a", "hangs", "b"], 2, measure)
    assert calls == ["a", "hangs"]
    assert rows["hung"] == "step 1 did not finish within 10 s; 132 of 132 workers are stuck"
    assert rows["hangs"]["etc_error"] == rows["hung"] and rows["hangs"]["etc_ms"] is None
    for path in ("a", "b"):  # a ran one of its two instances: no figure from half a measurement
        assert rows[path]["etc_ms"] is None
        assert rows[path]["etc_error"] == "not run: an earlier bundle's step hung (restart the process)"


def test_a_gpu_fault_stops_every_later_measurement():
    """A step that faults on the GPU (the runtime's status FAULT) loses the CUDA context: like a hang,
    nothing runs after it, so that etc bench reports the rows and the fault as one line instead of dying in
    the next PyTorch call with a traceback (seen on the H200: a misaligned address)."""
    from etc import runtime
    fault = ("step 1 failed on the GPU (cuEventQuery after the kernel): CUDA_ERROR_MISALIGNED_ADDRESS (716): "
             "misaligned address; the CUDA context is unusable from now on")

    class Lib:
        @staticmethod
        def etc_rt_last_error():
            return fault.encode()
    with pytest.raises(runtime.GpuFault):
        runtime._check(Lib, runtime.FAULT)
    with pytest.raises(runtime.EtcError) as other:  # any other error leaves the context usable, whatever it says
        runtime._check(Lib, runtime.ERROR)
    assert not isinstance(other.value, runtime.GpuFault)
    calls = []

    def measure(path):
        calls.append(path)
        if path == "faults":
            runtime._check(Lib, runtime.FAULT)
        return {"image": "cubin"}, [1.0, 1.0]

    rows = bench.measure_instances(["a", "faults", "b"], 2, measure)
    assert calls == ["a", "faults"]
    assert rows["hung"] == fault and rows["faults"]["etc_error"] == fault
    assert rows["b"]["etc_error"] == "not run: an earlier bundle's step failed on the GPU (restart the process)"


def test_bench_reports_the_rows_of_a_hang_and_exits_at_once(monkeypatch, tmp_path, capsys):
    """etc bench prints the rows measured before a hang (and writes them), then the hang as a one-line
    error, and leaves without the interpreter's CUDA teardown (which would wait for the hung kernel)."""
    rows = [{"model": "tiny-llama", "batch": 1, "ctx": 16, "etc_ms": None, "eager_ms": 2.0, "cudagraph_ms": 1.0,
             "compile_ms": None, "floor_ms": 0.1, "read_GBps": 4000.0, "bundle": "x",
             "etc_error": "step 1 did not finish within 10 s"}]

    def hang(*args, **kwargs):
        raise bench.Hung("step 1 did not finish within 10 s", rows)
    exits = []
    monkeypatch.setattr(bench, "run_batches", hang)
    monkeypatch.setattr(cli, "_exit_now", exits.append)
    out = tmp_path / "rows.jsonl"
    assert cli.main(["bench", "--model", "tiny-llama", "--bundle", "x", "--out", str(out)]) == 1
    assert exits == [1]
    captured = capsys.readouterr()
    assert "tiny-llama" in captured.out and "step 1 did not finish" in captured.out
    assert captured.err.strip() == "etc: error: step 1 did not finish within 10 s"
    assert len(out.read_text().splitlines()) == 1


def test_instances_below_one_are_a_one_line_error(capsys):
    assert cli.main(["bench", "--model", "tiny-llama", "--bundle", "x", "--instances", "0"]) == 1
    assert capsys.readouterr().err.strip() == "etc: error: instances must be at least 1, not 0"
