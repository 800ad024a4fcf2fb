"""The CPU reference: numpy tile bodies and a simulated persistent-kernel executor for sm_task IR.

    outputs = etc.reference.execute(module, args, seed=0, workers=None)
    ex = etc.reference.Executor(module); ex.step(args, seed=1)   # counters kept across decode steps
"""
from etc.reference.binding import arguments, to_numpy
from etc.reference.executor import DeadlockError, Executor, RaceError, execute
from etc.reference.numerics import round_bf16
from etc.reference.tiles import Operand, TileAccess, run_tile

__all__ = ["arguments", "to_numpy", "DeadlockError", "Executor", "Operand", "RaceError", "TileAccess", "execute", "round_bf16", "run_tile"]
