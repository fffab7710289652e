// Shared by the optimizer bindings (bind_<optimizer>.cpp): every binding checks every array
// (kind, dtype, shape) with the GIL held, then runs the kernel without it; the kernel checks
// indices and hyper-parameters before it writes, so a rejected call changes nothing.
#pragma once

#include "dispatch.hpp"

namespace sparseopt::bind {

// Checks param and the gradient, then asks make_call(param, value_tag, index_tag, table, grad)
// (GIL held: it checks its state arrays) for the kernel call, and runs that without the GIL.
template <class MakeCall>
void run_step(py::handle param_obj, py::handle indices_obj, py::handle values_obj,
              MakeCall&& make_call) {
  py::array param = require_param(param_obj);
  const GradientArrays g = require_gradient(indices_obj, values_obj, &param);
  dispatch(g.values, g.indices, [&](auto value_tag, auto index_tag) {
    using T = typename decltype(value_tag)::type;
    using I = typename decltype(index_tag)::type;
    auto call = make_call(param, value_tag, index_tag, table_of<T>(param), row_sparse_of<T, I>(g));
    py::gil_scoped_release release;
    call();
  });
}

template <class T>
Table<T> state_table(py::handle obj, const py::array& param, const char* name) {
  py::array a = require_state_like(obj, param, name);
  return table_of<T>(a);
}

inline std::int64_t* optional_row_counts(py::handle obj, const py::array& param, const char* name) {
  return obj.is_none() ? nullptr : require_row_counts(obj, param, name);
}

}  // namespace sparseopt::bind
