func.func @f() {
  // expected-eror {{misspelled}}
  return
}
