// float16 / bfloat16 arrays as the bindings see them. NumPy has float16; bfloat16 is
// ml_dtypes' extension dtype, recognised by its name and size (the module never imports
// ml_dtypes).
#pragma once

#include <sparseopt/half.hpp>
#include <sparseopt/optim/rows.hpp>

#include <string>
#include <type_traits>
#include <vector>

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

// The Element of a C++ element type.
template <class S>
inline constexpr Element element_kind = std::is_same_v<S, float>      ? Element::float32
                                        : std::is_same_v<S, float16>  ? Element::float16
                                        : std::is_same_v<S, bfloat16> ? Element::bfloat16
                                                                      : Element::other;

inline const char* element_name(Element e) {
  return e == Element::float32 ? "float32" : e == Element::float16 ? "float16" : "bfloat16";
}

// The state type of a half table's step, read off its first state array (None: float32, the
// step has no state): float32, float16 or bfloat16.
inline Element half_state_kind(py::handle first_state, const char* name) {
  if (first_state.is_none()) return Element::float32;
  py::array a = require_writeable(first_state, name);
  const Element e = element_of(a);
  if (e == Element::other)
    throw py::type_error(std::string(name) + " must have dtype float32, float16 or bfloat16 (the state_dtype), got " +
                         dtype_name(a) + "; sparseopt updates it in place, so create it with that dtype");
  return e;
}

// A half table's state array (see require_state): dtype S, the state_dtype, the same for every
// state array.
template <class S>
py::array require_half_state(py::handle obj, const py::array& param, const char* name, bool per_row) {
  return require_state(
      obj, param, name, per_row, [](const py::array& a) { return element_of(a) == element_kind<S>; },
      [&] {
        const std::string dtype = element_name(element_kind<S>);
        return StateDtype{"dtype " + dtype + " (the state_dtype, the same for every state array of a " +
                              dtype_name(param) + " table)",
                          dtype};
      });
}

// The gradient of a half table: int32/int64 indices, float32 values of shape
// (len(indices), *param.shape[1:]).
inline GradientArrays require_float_gradient(py::handle indices, py::handle values, const py::array& param) {
  // param gives the values' shape; their dtype is the half table's own rule
  return require_gradient_with(indices, values, &param, [&param](const py::array& v) {
    if (!has_dtype<float>(v))
      throw py::type_error("values must have dtype float32 for a " + dtype_name(param) +
                           " table (gradients are summed and applied in float32), got " + dtype_name(v) +
                           "; pass values.astype(np.float32)");
  });
}

inline HalfRounding rounding_of(const std::string& rounding, std::uint64_t seed) {
  if (rounding != "stochastic" && rounding != "nearest")
    throw py::value_error("rounding must be 'stochastic' or 'nearest', got '" + rounding + "'");
  return HalfRounding{rounding == "stochastic" ? Rounding::stochastic : Rounding::nearest, seed};
}

// A step's `rounding` argument: None (the defaults: stochastic, seed 0) or (rounding, seed).
inline HalfRounding rounding_of(py::handle obj) {
  if (obj.is_none()) return HalfRounding{};
  const auto spec = py::cast<py::tuple>(obj);
  if (spec.size() != 2) throw py::value_error("rounding must be None or (rounding, seed)");
  return rounding_of(py::cast<std::string>(spec[0]), py::cast<std::uint64_t>(spec[1]));
}

}  // namespace sparseopt::bind
