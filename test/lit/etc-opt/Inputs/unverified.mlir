func.func @f(%a: index) -> index {
  %e = "event_tensor.event_tensor"() {name = "e", shape = affine_map<() -> (2)>} : () -> !event_tensor.event
  return %a : index
}
