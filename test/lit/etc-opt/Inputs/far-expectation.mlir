// expected-error @-5 {{nowhere}}
func.func @f() {
  return
}
