// sparseopt._core.coalesce: sum repeated indices of a row-sparse gradient.
#include <pybind11/stl.h>

#include <optional>

#include <sparseopt/coalesce.hpp>

#include "bindings.hpp"
#include "dispatch.hpp"

namespace sparseopt::bind {

namespace {

py::tuple coalesce(py::handle indices_obj, py::handle values_obj, std::optional<std::int64_t> num_rows,
                   int num_threads) {
  if (num_rows && *num_rows < 0)
    throw py::value_error("num_rows must be >= 0 or None, got " + std::to_string(*num_rows));
  detail::resolve_threads(num_threads);
  const GradientArrays g = require_gradient(indices_obj, values_obj, nullptr);
  return dispatch(g.values, g.indices, [&](auto value_tag, auto index_tag) -> py::tuple {
    using T = typename decltype(value_tag)::type;
    using I = typename decltype(index_tag)::type;
    const RowSparse<T, I> grad = row_sparse_of<T, I>(g);
    CoalescePlan<I> plan;
    {
      py::gil_scoped_release release;
      plan = plan_coalesce(grad.indices, grad.size, num_rows.value_or(-1), num_threads);
    }
    std::vector<py::ssize_t> shape(g.values.shape(), g.values.shape() + g.values.ndim());
    shape[0] = plan.size();
    py::array_t<I> rows(plan.size());
    py::array_t<T> values(shape);
    py::array_t<std::int64_t> counts(plan.size());
    {
      py::gil_scoped_release release;
      write_coalesced(grad, plan, rows.mutable_data(), values.mutable_data(),
                      counts.mutable_data(), num_threads);
    }
    return py::make_tuple(rows, values, counts);
  });
}

}  // namespace

void bind_coalesce(py::module_& m) {
  m.def("coalesce", &coalesce, py::arg("indices"), py::arg("values"), py::arg("num_rows"),
        py::arg("num_threads"),
        "Unique indices (ascending), summed values and counts of a row-sparse gradient.");
}

}  // namespace sparseopt::bind
