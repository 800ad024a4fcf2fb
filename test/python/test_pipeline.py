"""The Python API: run_pipeline, the pass registry, pipeline parsing and reproducers."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlir import ir

import etc
from etc import mlir_adapter as mlir
from etc.passes import REGISTRY

ROOT = Path(__file__).resolve().parents[2]

VALID = """
func.func @step() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 64 : i64} : () -> index
  %e = "event_tensor.event_tensor"(%b) {name = "h", shape = affine_map<()[s0] -> (2)>, wait_count = affine_map<(d0)[s0] -> (0)>} : (index) -> !event_tensor.event
  "event_tensor.task_grid"(%b, %e) {operandSegmentSizes = array<i32: 1, 0, 0, 0, 1>, name = "p", kind = "gemv", grid = affine_map<()[s0] -> (8, s0)>, wait_maps = [], notify_maps = [affine_map<(d0, d1)[s0] -> (d0 floordiv 4)>], params = {}} : (index, !event_tensor.event) -> ()
  "event_tensor.task_grid"(%b, %e) {operandSegmentSizes = array<i32: 1, 0, 0, 1, 0>, name = "c", kind = "gemv", grid = affine_map<()[s0] -> (2)>, wait_maps = [affine_map<(d0)[s0] -> (d0)>], notify_maps = [], params = {}} : (index, !event_tensor.event) -> ()
  return
}
"""

UNEVEN = VALID.replace("(8, s0)", "(10, s0)")


def wait_count(module) -> str:
    (op,) = mlir.ops_named(module.operation, "event_tensor.event_tensor")
    return str(mlir.map_attr(op, "wait_count"))


def test_text_in_module_out_with_default_pipeline():
    module = etc.run_pipeline(VALID)
    assert wait_count(module) == "(d0)[s0] -> (s0 * 4)"


def test_user_module_is_updated_in_place_in_its_own_context():
    ctx = ir.Context()  # a context the user made: ETC loads its dialects into it
    mlir.load_dialects(ctx)
    with ctx:
        module = ir.Module.parse(VALID)
    out = etc.run_pipeline(module, "etc-derive-wait-counts,canonicalize")
    assert out is module
    assert wait_count(module) == "(d0)[s0] -> (s0 * 4)"


def test_failure_names_the_pass_and_writes_a_replayable_reproducer(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ETC_REPRODUCER_DIR", str(tmp_path))
    with pytest.raises(etc.PassFailure) as info:
        etc.run_pipeline(UNEVEN, "etc-verify-event-tensor,etc-derive-wait-counts,canonicalize")
    failure = info.value
    assert failure.pass_name == "etc-derive-wait-counts"
    assert "pass 'etc-derive-wait-counts' failed" in str(failure)
    assert "not a known multiple of 4" in str(failure)
    printed = capsys.readouterr().err
    command = re.search(r"reproduce with: (etc-opt .*)", printed).group(1)
    assert Path(failure.reproducer).parent == tmp_path
    # The printed command replays the failure: same pass, same message, original location kept.
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    replay = subprocess.run(command, shell=True, capture_output=True, text=True, env=env)
    assert replay.returncode == 1
    assert "not a known multiple of 4" in replay.stderr
    assert "Traceback" not in replay.stderr
    assert re.search(r"<input>:5:3: error", replay.stderr), replay.stderr


def test_upstream_failure_is_named_too(tmp_path, monkeypatch):
    monkeypatch.setenv("ETC_REPRODUCER_DIR", str(tmp_path))
    with pytest.raises(etc.PassFailure) as info:
        etc.run_pipeline("module attributes {gpu.container_module} { gpu.module @k { } }",
                         "etc-verify-event-tensor,canonicalize,gpu-module-to-binary")
    assert info.value.pass_name == "gpu-module-to-binary"
    assert "the module has no target attributes" in str(info.value)


@pytest.mark.parametrize("pipeline, message", [
    ("etc-nope", "unknown pass 'etc-nope'; ETC passes: "),
    ("nope-pass", "upstream MLIR passes are accepted too"),
    ("etc-verify-event-tensor{x}", "malformed option 'x'"),
    ("etc-verify-event-tensor{x=1}", "has no option 'x'"),
    ("func.func(etc-verify-event-tensor)", "cannot be nested"),
    ("etc-verify-event-tensor,", "empty element"),
])
def test_bad_pipelines_are_one_line_errors(pipeline, message):
    with pytest.raises(etc.PipelineError) as info:
        etc.run_pipeline(VALID, pipeline)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_merge_per_batch_without_the_merge_fusion_is_a_one_line_error():
    from etc.pipeline import frontend_pipeline

    assert "merge-per-batch=true" in frontend_pipeline(fuse={"attention-merge-per-batch": True})
    # the front end alone does not know the schedule: off unless named (etc.compile turns it on for static)
    assert "merge-per-batch=false" in frontend_pipeline(fuse=True)
    # it merges at one row in o_proj (attention-merge) or in the last split (attention-merge-last)
    assert "merge-per-batch=true" in frontend_pipeline(fuse={"attention-merge": False,
                                                             "attention-merge-per-batch": True})
    with pytest.raises(etc.PipelineError) as info:
        frontend_pipeline(fuse={"attention-merge": False, "attention-merge-last": False,
                                "attention-merge-per-batch": True})
    assert "needs the attention-merge or attention-merge-last fusion" in str(info.value) \
        and "\n" not in str(info.value)


def test_malformed_ir_text_gives_location():
    with pytest.raises(etc.EtcError) as info:
        etc.run_pipeline("func.func @f( {", source_name="bad.mlir")
    assert str(info.value).startswith("bad.mlir:1:")


def test_options_are_typed():
    from etc.passes.base import Option, Pass

    class Demo(Pass):
        NAME = "etc-demo"
        OPTIONS = (Option("num-sms", int, 132, "workers"), Option("fuse", bool, True, "fuse"),
                   Option("mode", str, "static", "mode", choices=("static", "dynamic")))

    p = Demo(**{"num-sms": "8", "fuse": "false", "mode": "dynamic"})
    assert p.options == {"num-sms": 8, "fuse": False, "mode": "dynamic"}
    assert p.pipeline_text() == "etc-demo{num-sms=8 fuse=false mode=dynamic}"
    for bad in ({"num-sms": "x"}, {"fuse": "maybe"}, {"mode": "hybridish"}):
        with pytest.raises(etc.PipelineError):
            Demo(**bad)


def test_every_registered_pass_has_a_lit_test():
    """Each pass has test/lit/passes/<name>.mlir that runs it, with positive, no-match and error cases."""
    missing = []
    for name in REGISTRY:
        path = ROOT / "test" / "lit" / "passes" / f"{name}.mlir"
        if not path.exists():
            missing.append(f"{name}: no {path.relative_to(ROOT)}")
            continue
        text = path.read_text()
        if not re.search(rf"RUN:.*-p\s+['\"]?[^\s]*(?<![\w-]){re.escape(name)}(?![\w-])", text):
            missing.append(f"{name}: the lit test does not run the pass")
        if "--verify-diagnostics" not in text or "expected-error" not in text:
            missing.append(f"{name}: the lit test has no diagnostic case")
        if "CHECK" not in text:
            missing.append(f"{name}: the lit test checks no output")
    assert not missing, "\n".join(missing)


def test_every_pass_documents_itself():
    for name, cls in REGISTRY.items():
        assert re.fullmatch(r"etc-[a-z0-9-]+", name)
        module = sys.modules[cls.__module__]
        assert module.__file__.endswith(name.replace("-", "_") + ".py"), "file name mirrors the pass name"
        doc = module.__doc__ or ""
        assert doc.startswith(name + ":") and "Before" in doc and "Matches" in doc and "Guarantees" in doc, name
        assert cls.SUMMARY and "\n" not in cls.SUMMARY


def test_help_lists_every_pass():
    out = subprocess.run([sys.executable, "-m", "etc.opt", "--help"], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT / "python")))
    assert out.returncode == 0
    for name, cls in REGISTRY.items():
        assert name in out.stdout and cls.SUMMARY in out.stdout


@pytest.mark.parametrize("bad", [b"module {}", None, 42])
def test_non_ir_arguments_are_clear_errors(bad):
    with pytest.raises(etc.EtcError, match="run_pipeline takes an mlir.ir.Module or IR text, not"):
        etc.run_pipeline(bad)


def test_pass_errors_are_lines_with_locations(tmp_path, monkeypatch):
    monkeypatch.setenv("ETC_REPRODUCER_DIR", str(tmp_path))
    wrong_arity = VALID.replace("[affine_map<(d0, d1)[s0] -> (d0 floordiv 4)>]", "[affine_map<(d0, d1, d2)[s0] -> (d0)>]")
    with pytest.raises(etc.PassFailure) as info:
        etc.run_pipeline(wrong_arity, "etc-derive-wait-counts")
    lines = str(info.value).splitlines()
    assert lines[0].startswith("pass 'etc-derive-wait-counts' failed: <input>:5:3: error: 'notify_maps' map")
    assert all(re.match(r"(pass '.*' failed: )?<input>:\d+:\d+: error: ", line) for line in lines)
