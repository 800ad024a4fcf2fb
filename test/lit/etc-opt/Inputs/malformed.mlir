func.func @f(%a: index) -> index {
  %0 = arith.addi %a, : index
  return %0 : index
}
