// float16 / bfloat16 arrays as the bindings see them. NumPy has float16; bfloat16 is
// ml_dtypes' extension dtype, recognised by its name and size (the module never imports
// ml_dtypes).
#pragma once

#include <sparseopt/half.hpp>

#include <string>

#include "dispatch.hpp"

namespace sparseopt::bind {

enum class Element { float32, float16, bfloat16, other };

inline Element element_of(const py::array& a) {
  if (has_dtype<float>(a)) return Element::float32;
  if (a.itemsize() != 2) return Element::other;
  const std::string name = dtype_name(a);
  if (name == "float16" && a.dtype().kind() == 'f') return Element::float16;
  if (name == "bfloat16") return Element::bfloat16;
  return Element::other;
}

// Calls f(tag<H>{}) for a half element kind.
template <class F>
decltype(auto) dispatch_half(Element e, F&& f) {
  if (e == Element::float16) return f(tag<float16>{});
  return f(tag<bfloat16>{});
}

// Calls f(tag<S>{}) for a state element kind: float, float16 or bfloat16.
template <class F>
decltype(auto) dispatch_state(Element e, F&& f) {
  if (e == Element::float32) return f(tag<float>{});
  return dispatch_half(e, f);
}

inline py::array require_half_table(py::handle obj, const char* name) {
  py::array a = require_writeable(obj, name);
  const Element e = element_of(a);
  if (e != Element::float16 && e != Element::bfloat16)
    throw py::type_error(std::string(name) + " must have dtype float16 or bfloat16, got " + dtype_name(a) +
                         "; sparseopt updates it in place, so create it with that dtype (a "
                         "converted copy would be updated instead)");
  if (a.ndim() < 1)
    throw py::value_error(std::string(name) + " must have at least one dimension (num_rows, *row_shape), got a 0-d array");
  return a;
}

inline bool is_half_array(py::handle obj) {
  if (!py::isinstance<py::array>(obj)) return false;
  const Element e = element_of(py::reinterpret_borrow<py::array>(obj));
  return e == Element::float16 || e == Element::bfloat16;
}

}  // namespace sparseopt::bind
