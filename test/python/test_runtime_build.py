"""The C++ runtime builds with CMake on a machine with no GPU and no CUDA toolkit, and says why it cannot run."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("c++") is None, reason="needs cmake and a C++ compiler")
def test_runtime_builds_and_reports_the_driver(tmp_path):
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"], check=True,
                   capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "-j2"], check=True, capture_output=True)
    probe = subprocess.run([str(build / "runtime" / "etc-runtime-probe")], capture_output=True, text=True)
    if probe.returncode == 3:  # no GPU here: a one-line reason, not a crash
        assert probe.stderr.startswith("etc-runtime-probe: no CUDA driver:")
        assert len(probe.stderr.strip().splitlines()) == 1
    else:
        assert probe.returncode == 0, probe.stderr
        assert "device(s)" in probe.stdout
