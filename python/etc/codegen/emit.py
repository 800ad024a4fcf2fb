"""A small MLIR text emitter for generated device code: SSA names, constants and affine expressions.

Generated code is MLIR (arith, scf, llvm, nvvm, gpu dialects) built as text by Python builders, then
parsed and lowered by upstream passes. Index arithmetic is i64; sizes come from the kernel's `sizes`
array (one i64 per symbol).
"""
from __future__ import annotations

import itertools

from mlir import ir

from etc import mlir_adapter as mlir


class Emitter:
    """Lines of one function body; fresh SSA names; cached constants and size loads."""

    def __init__(self, prefix: str = "v"):
        self.lines: list[str] = []
        self._names = itertools.count()
        self._prefix = prefix
        self._consts: dict[tuple, str] = {}
        self._size_values: dict[int, str] = {}

    def child(self, prefix: str) -> "Emitter":
        """An emitter for a nested region: new names and constants, but the sizes already loaded here
        (they dominate the region) are reused."""
        nested = Emitter(prefix)
        nested._size_values = dict(self._size_values)
        return nested

    def fresh(self) -> str:
        return f"%{self._prefix}{next(self._names)}"

    def emit(self, text: str) -> str:
        name = self.fresh()
        self.lines.append(f"{name} = {text}")
        return name

    def line(self, text: str) -> None:
        self.lines.append(text)

    def const(self, value: int, ty: str = "i64") -> str:
        key = (value, ty)
        if key not in self._consts:
            self._consts[key] = self.emit(f"arith.constant {value} : {ty}")
        return self._consts[key]

    def size(self, symbol_index: int) -> str:
        """sizes[symbol_index] as i64 (loaded once per function)."""
        if symbol_index not in self._size_values:
            ptr = self.emit(f"llvm.getelementptr %sizes[{symbol_index}] : (!llvm.ptr) -> !llvm.ptr, i64")
            self._size_values[symbol_index] = self.emit(f"llvm.load {ptr} : !llvm.ptr -> i64")
        return self._size_values[symbol_index]

    def binary(self, op: str, a: str, b: str) -> str:
        return self.emit(f"arith.{op} {a}, {b} : i64")

    def affine(self, expr: ir.AffineExpr, dims: list[str], symbols: list[int]) -> str:
        """The i64 value of an affine expression: d_i -> dims[i], s_j -> sizes[symbols[j]].
        Operands are non-negative here, so mod is a signed remainder."""
        ops = {"add": "addi", "mul": "muli", "floordiv": "floordivsi", "ceildiv": "ceildivsi", "mod": "remsi"}
        return mlir.fold_affine(expr, self.const, lambda i: dims[i], lambda i: self.size(symbols[i]),
                                lambda kind, a, b: self.binary(ops[kind], a, b))

    def affine_map(self, m: ir.AffineMap, dims: list[str], symbols: list[int]) -> list[str]:
        return [self.affine(e, dims, symbols) for e in m.results]

    def body(self, indent: str = "    ") -> str:
        return "\n".join(indent + line for line in self.lines)
