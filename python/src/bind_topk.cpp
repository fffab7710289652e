// sparseopt._core.topk: the k best elements along the last axis of a 1-D or 2-D array.
#include <sparseopt/half_topk.hpp>
#include <sparseopt/topk.hpp>

#include <string>

#include "bindings.hpp"
#include "dispatch.hpp"
#include "half_arrays.hpp"

namespace sparseopt::bind {

namespace {

py::tuple topk(py::handle x_obj, std::int64_t k, bool largest, bool magnitude, bool sorted,
               int num_threads) {
  detail::resolve_threads(num_threads);
  // Read only: a read-only array is fine, a copy never is (require_array refuses what would
  // need one).
  const py::array x = require_array(x_obj, "x");
  const bool half = is_half_array(x);
  if (!half && !has_dtype<float>(x) && !has_dtype<double>(x))
    throw py::type_error("x must have dtype float32, float64, float16 or bfloat16, got " + dtype_name(x) +
                         dtype_hint("x", "np.float32", false));
  if (x.ndim() != 1 && x.ndim() != 2)
    throw py::value_error("x must be 1-D (n,) or 2-D (rows, n), got shape " + shape_str(x) +
                          "; pass x.reshape(-1, x.shape[-1]) for rows along the last axis");
  const std::int64_t rows = x.ndim() == 1 ? 1 : x.shape(0);
  const std::int64_t n = x.shape(x.ndim() - 1);
  detail::require_topk_k(n, k);
  TopkOptions options;
  options.largest = largest;
  options.magnitude = magnitude;
  options.sorted = sorted;
  std::vector<py::ssize_t> out_shape{static_cast<py::ssize_t>(k)};
  if (x.ndim() == 2) out_shape.insert(out_shape.begin(), static_cast<py::ssize_t>(rows));
  if (half) {
    py::array values(x.dtype(), out_shape);
    py::array_t<std::int64_t> indices(out_shape);
    dispatch_half(element_of(x), [&](auto half_tag) {
      using H = typename decltype(half_tag)::type;
      const H* data = static_cast<const H*>(x.data());
      H* v = static_cast<H*>(values.mutable_data());
      std::int64_t* ix = indices.mutable_data();
      py::gil_scoped_release release;
      topk_rows_half(data, rows, n, k, v, ix, options, num_threads);
    });
    return py::make_tuple(values, indices);
  }
  return dispatch_float(x, [&](auto value_tag) -> py::tuple {
    using T = typename decltype(value_tag)::type;
    std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(k)};
    if (x.ndim() == 2) shape.insert(shape.begin(), static_cast<py::ssize_t>(rows));
    py::array_t<T> values(shape);
    py::array_t<std::int64_t> indices(shape);
    const T* data = static_cast<const T*>(x.data());
    T* v = values.mutable_data();
    std::int64_t* ix = indices.mutable_data();
    {
      py::gil_scoped_release release;
      topk_rows(data, rows, n, k, v, ix, options, num_threads);
    }
    return py::make_tuple(values, indices);
  });
}

}  // namespace

void bind_topk(py::module_& m) {
  m.def("topk", &topk, py::arg("x"), py::arg("k"), py::arg("largest"), py::arg("magnitude"),
        py::arg("sorted"), py::arg("num_threads"),
        "(values, indices) of the k best elements along the last axis (see sparseopt.topk).");
}

}  // namespace sparseopt::bind
