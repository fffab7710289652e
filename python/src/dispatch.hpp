// The one place where NumPy dtypes become C++ types. Every binding calls a kernel through
// dispatch(), which instantiates it for float/double tables and int32/int64 indices.
#pragma once

#include <cstdint>
#include <type_traits>

#include "arrays.hpp"

namespace sparseopt::bind {

template <class T> struct tag { using type = T; };

// Calls f(tag<T>{}) for the (checked) float dtype of `table`.
template <class F>
decltype(auto) dispatch_float(const py::array& table, F&& f) {
  if (has_dtype<float>(table)) return f(tag<float>{});
  return f(tag<double>{});
}

// Calls f(tag<I>{}) for the (checked) index dtype of `indices`.
template <class F>
decltype(auto) dispatch_index(const py::array& indices, F&& f) {
  if (has_dtype<std::int32_t>(indices)) return f(tag<std::int32_t>{});
  return f(tag<std::int64_t>{});
}

// Calls f(tag<T>{}, tag<I>{}) for the value dtype of `values` and index dtype of `indices`
// (both already checked by arrays.hpp).
template <class F>
decltype(auto) dispatch(const py::array& values, const py::array& indices, F&& f) {
  return dispatch_float(values, [&](auto value_tag) -> decltype(auto) {
    return dispatch_index(indices, [&](auto index_tag) -> decltype(auto) { return f(value_tag, index_tag); });
  });
}

}  // namespace sparseopt::bind
