// sparseopt._core.meprop_linear_backward: meProp's sparsified backward of a linear layer.
#include <sparseopt/meprop.hpp>

#include <string>

#include "bindings.hpp"
#include "dispatch.hpp"

namespace sparseopt::bind {

namespace {

// A 2-D float array the kernel only reads (read-only arrays are fine, copies never are).
py::array require_matrix(py::handle obj, const char* name, const char* shape_hint) {
  py::array a = require_array(obj, name);
  require_float_dtype(a, name);
  if (a.ndim() != 2)
    throw py::value_error(std::string(name) + " must be 2-D " + shape_hint + ", got shape " + shape_str(a));
  return a;
}

template <class T>
Table<const T> read_matrix(const py::array& a) {
  return Table<const T>{static_cast<const T*>(a.data()), a.shape(0), a.shape(1)};
}

py::tuple linear_backward(py::handle x_obj, py::handle weight_obj, py::handle grad_out_obj, std::int64_t k,
                          bool unified, bool need_grad_x, int num_threads) {
  detail::resolve_threads(num_threads);
  const py::array x = require_matrix(x_obj, "x", "(batch, in)");
  const py::array weight = require_matrix(weight_obj, "weight", "(out, in)");
  const py::array grad_out = require_matrix(grad_out_obj, "grad_out", "(batch, out)");
  require_same_dtype(weight, x, "weight", "x");
  require_same_dtype(grad_out, x, "grad_out", "x");
  const std::int64_t batch = x.shape(0), in = x.shape(1), out = weight.shape(0);
  if (weight.shape(1) != in)
    throw py::value_error("weight must have shape (out, in) with in = x.shape[1] = " + std::to_string(in) +
                          ", got " + shape_str(weight) + " (PyTorch's layout: one row per output unit)");
  if (grad_out.shape(0) != batch || grad_out.shape(1) != out)
    throw py::value_error("grad_out must have shape (batch, out) = (" + std::to_string(batch) + ", " +
                          std::to_string(out) + "), got " + shape_str(grad_out));
  if (k < 1 || k > out)
    throw py::value_error("k must be in [1, out] = [1, " + std::to_string(out) + "], got " + std::to_string(k));
  return dispatch_float(x, [&](auto value_tag) -> py::tuple {
    using T = typename decltype(value_tag)::type;
    const Table<const T> xs = read_matrix<T>(x), w = read_matrix<T>(weight), g = read_matrix<T>(grad_out);
    thread_local MePropPlan<T> plan;  // reused between calls: no fresh buffers per batch
    {
      py::gil_scoped_release release;
      plan.build(g.data, batch, out, in, k, unified, num_threads);
    }
    py::array_t<std::int64_t> rows(plan.size());
    py::array_t<T> values({static_cast<py::ssize_t>(plan.size()), static_cast<py::ssize_t>(in)});
    py::array_t<T> grad_bias(out);
    py::object grad_x = py::none();
    T* gx = nullptr;
    if (need_grad_x) {
      py::array_t<T> a({static_cast<py::ssize_t>(batch), static_cast<py::ssize_t>(in)});
      gx = a.mutable_data();
      grad_x = std::move(a);
    }
    const Table<T> v{values.mutable_data(), plan.size(), in};
    std::int64_t* r = rows.mutable_data();
    T* gb = grad_bias.mutable_data();
    {
      py::gil_scoped_release release;
      meprop_linear_backward(xs, w, g, plan, gx, r, v, gb, num_threads);
    }
    return py::make_tuple(grad_x, rows, values, grad_bias);
  });
}

}  // namespace

void bind_meprop(py::module_& m) {
  m.def("meprop_linear_backward", &linear_backward, py::arg("x"), py::arg("weight"), py::arg("grad_out"),
        py::arg("k"), py::arg("unified"), py::arg("need_grad_x"), py::arg("num_threads"),
        "(grad_x or None, rows, values, grad_bias): meProp's backward of x @ weight.T + bias.");
}

}  // namespace sparseopt::bind
