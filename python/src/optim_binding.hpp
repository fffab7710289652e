// Shared by the optimizer bindings (bind_<optimizer>.cpp): every binding checks every array
// (kind, dtype, shape) with the GIL held, then runs the kernel without it; the kernel checks
// indices and hyper-parameters before it writes, so a rejected call changes nothing.
#pragma once

#include <sparseopt/optim/exact.hpp>

#include <vector>

#include "bags.hpp"
#include "dispatch.hpp"
#include "half_arrays.hpp"

namespace sparseopt::bind {

// Checks param and the gradient, then asks make_call(param, state_tag, index_tag, table, grad,
// how) (GIL held: it checks its state arrays) for the kernel call, and runs that without the
// GIL. state_tag names the state arrays' type: the table's for float32/float64 tables; for a
// float16/bfloat16 table the type of `first_state` (its first state array; None: float32),
// whose gradient is float32 and whose rounding is `rounding_obj` (None or (rounding, seed)).
// The gradient is row-sparse, (indices, values), when `bags` is None; else it is the fused
// step's: values is grad_out (one row per bag, the parameter's dtype and row shape) and `bags`
// the tuple (indptr, weights or None, mean) of the bags over `indices`.
template <class MakeCall>
void run_step(py::handle param_obj, py::handle indices_obj, py::handle values_obj, py::handle bags_obj,
              py::handle rounding_obj, py::handle first_state, const char* first_state_name,
              MakeCall&& make_call) {
  if (is_half_array(param_obj)) {
    py::array param = require_half_table(param_obj, "param");
    if (!bags_obj.is_none())
      throw py::type_error("step_bags takes float32 or float64 tables; for a " + dtype_name(param) +
                           " table compute the rows' gradient (float32) with gather_sum_backward and call step()");
    const GradientArrays g = require_float_gradient(indices_obj, values_obj, param);
    const HalfRounding how = rounding_of(rounding_obj);
    const Element state_kind = half_state_kind(first_state, first_state_name);
    dispatch_half(element_of(param), [&](auto param_tag) {
      using P = typename decltype(param_tag)::type;
      dispatch_state(state_kind, [&](auto state_tag) {
        dispatch_index(g.indices, [&](auto index_tag) {
          using I = typename decltype(index_tag)::type;
          auto call = make_call(param, state_tag, index_tag, table_of<P>(param), row_sparse_of<float, I>(g), how);
          py::gil_scoped_release release;
          call();
        });
      });
    });
    return;
  }
  py::array param = require_param(param_obj);
  if (!bags_obj.is_none()) {
    const auto spec = py::cast<py::tuple>(bags_obj);
    if (spec.size() != 3) throw py::value_error("bags must be (indptr, weights, mean)");
    py::array grad_out = require_array(values_obj, "grad_out");
    require_same_dtype(grad_out, param, "grad_out", "param");
    const BagArrays bags = require_bags(spec[0], indices_obj, spec[1], grad_out, "grad_out", plain_names);
    bool ok = grad_out.ndim() == param.ndim() && grad_out.shape(0) == bags.num_bags;
    for (py::ssize_t d = 1; ok && d < param.ndim(); ++d) ok = grad_out.shape(d) == param.shape(d);
    if (!ok) {
      std::vector<py::ssize_t> want(param.shape(), param.shape() + param.ndim());
      want[0] = bags.num_bags;
      throw py::value_error("grad_out must have shape " + shape_str(want) +
                            " (num_bags = len(indptr) - 1, *param.shape[1:]), got " + shape_str(grad_out) +
                            (grad_out.ndim() >= 1 ? plain_names.offsets_hint(grad_out.shape(0), bags.num_bags) : ""));
    }
    const BagReduction mode = reduction(py::cast<bool>(spec[2]));
    dispatch(grad_out, bags.indices, [&](auto value_tag, auto index_tag) {
      using T = typename decltype(value_tag)::type;
      using I = typename decltype(index_tag)::type;
      const BagGradient<T, I> grad{read_table<T>(grad_out), bags.view<T, I>(), mode};
      auto call = make_call(param, value_tag, index_tag, table_of<T>(param), grad, HalfRounding{});
      py::gil_scoped_release release;
      call();
    });
    return;
  }
  const GradientArrays g = require_gradient(indices_obj, values_obj, &param);
  dispatch(g.values, g.indices, [&](auto value_tag, auto index_tag) {
    using T = typename decltype(value_tag)::type;
    using I = typename decltype(index_tag)::type;
    auto call = make_call(param, value_tag, index_tag, table_of<T>(param), row_sparse_of<T, I>(g), HalfRounding{});
    py::gil_scoped_release release;
    call();
  });
}

// A state array of the parameter's shape and of type S: the parameter's dtype for a float
// table, the state_dtype for a half table.
template <class S>
Table<S> state_table(py::handle obj, const py::array& param, const char* name) {
  py::array a = is_half_array(param) ? require_half_state<S>(obj, param, name, false)
                                     : require_float_state(obj, param, name, false);
  return table_of<S>(a);
}

// A state array of one S per row (shape (num_rows,)).
template <class S>
S* row_state(py::handle obj, const py::array& param, const char* name) {
  py::array a = is_half_array(param) ? require_half_state<S>(obj, param, name, true)
                                     : require_float_state(obj, param, name, true);
  return static_cast<S*>(a.mutable_data());
}

inline std::int64_t* optional_row_counts(py::handle obj, const py::array& param, const char* name) {
  return obj.is_none() ? nullptr : require_row_counts(obj, param, name);
}

// For flush: checks the parameter and `indices` (None for every row, else a 1-D int32/int64
// array), then runs make_call(param, state_tag, table, indices_ptr, n, how)'s result without
// the GIL (state_tag, how: as run_step's).
template <class MakeCall>
void run_flush(py::handle param_obj, py::handle indices_obj, py::handle rounding_obj, py::handle first_state,
               const char* first_state_name, MakeCall&& make_call) {
  const bool half = is_half_array(param_obj);
  py::array param = half ? require_half_table(param_obj, "param") : require_param(param_obj);
  const bool some = !indices_obj.is_none();
  py::array indices;
  if (some) {
    indices = require_array(indices_obj, "indices");
    require_index_dtype(indices, "indices");
    if (indices.ndim() != 1)
      throw py::value_error("indices must be 1-D, got shape " + shape_str(indices));
  }
  auto with_types = [&](auto param_tag, auto state_tag, const HalfRounding& how) {
    using P = typename decltype(param_tag)::type;
    auto run = [&](auto index_tag) {
      using I = typename decltype(index_tag)::type;
      const I* ptr = some ? static_cast<const I*>(indices.data()) : nullptr;
      const std::int64_t n = some ? indices.shape(0) : 0;
      auto call = make_call(param, state_tag, table_of<P>(param), ptr, n, how);
      py::gil_scoped_release release;
      call();
    };
    if (some)
      dispatch_index(indices, run);
    else
      run(tag<std::int64_t>{});
  };
  if (half) {
    const HalfRounding how = rounding_of(rounding_obj);
    const Element state_kind = half_state_kind(first_state, first_state_name);
    dispatch_half(element_of(param), [&](auto param_tag) {
      dispatch_state(state_kind, [&](auto state_tag) { with_types(param_tag, state_tag, how); });
    });
    return;
  }
  dispatch_float(param, [&](auto value_tag) { with_types(value_tag, value_tag, HalfRounding{}); });
}

// A writeable, C-contiguous float64 array of exactly `rows` x `cols` (rows < 0: any).
inline double* require_float64_matrix(py::handle obj, std::int64_t rows, std::int64_t cols,
                                      const char* name, std::int64_t* rows_out = nullptr) {
  py::array a = require_writeable(obj, name);
  if (!has_dtype<double>(a))
    throw py::type_error(std::string(name) + " must have dtype float64, got " + dtype_name(a));
  if (a.ndim() != 2 || (rows >= 0 && a.shape(0) != rows) || a.shape(1) != cols)
    throw py::value_error(std::string(name) + " must have shape (" +
                          (rows >= 0 ? std::to_string(rows) : std::string("steps")) + ", " +
                          std::to_string(cols) + "), got " + shape_str(a));
  if (rows_out) *rows_out = a.shape(0);
  return static_cast<double*>(a.mutable_data());
}

// Exact mode's arrays: last_step (num_rows,) int64, history (capacity, columns) and window
// (H, Q) float64, shaped by the optimizer's layout, and history_start (1,) int64 (None: the
// unbounded record that starts at step 0).
inline ExactState exact_state(py::handle last_step, py::handle history, py::handle window,
                              py::handle history_start, const py::array& param,
                              const ExactLayout& layout) {
  ExactState s;
  s.last_step = require_row_counts(last_step, param, "last_step");
  s.history = require_float64_matrix(history, -1, layout.columns(), "history", &s.capacity);
  s.ring = require_float64_matrix(window, layout.window, layout.quantities, "window");
  if (!history_start.is_none()) {
    py::array a = require_writeable(history_start, "history_start");
    if (!has_dtype<std::int64_t>(a) || a.ndim() != 1 || a.shape(0) != 1)
      throw py::value_error("history_start must be an int64 array of shape (1,), got " +
                            dtype_name(a) + " " + shape_str(a));
    s.first_step = static_cast<std::int64_t*>(a.mutable_data());
  }
  return s;
}

// name(param, options): raises ValueError unless options.validate_in<T>() accepts them for the
// type param's step computes in (float for half tables): the check every step makes, for
// Python to run at construction and when a hyper-parameter is set.
template <class Options>
void def_check_options(py::module_& m, const char* name) {
  m.def(
      name,
      [](py::handle param, const Options& options) {
        if (is_half_array(param)) return options.template validate_in<float>();
        dispatch_float(require_param(param), [&](auto value_tag) {
          options.template validate_in<typename decltype(value_tag)::type>();
        });
      },
      py::arg("param"), py::arg("options"),
      "Raises ValueError unless options suit param's dtype (the check every step makes).");
}

// The layout as Python sees it: (window, quantities, columns).
inline py::tuple layout_tuple(const ExactLayout& layout) {
  return py::make_tuple(layout.window, layout.quantities, layout.columns());
}

}  // namespace sparseopt::bind
