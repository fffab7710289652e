// sparseopt._core.grad_norm / clip_grad_norm: the total norm of a list of gradients, each a
// dense array or a row-sparse (indices, values) pair, and clipping by it. Every item is checked
// (and every row-sparse index too, while its norm is taken) before anything is scaled.
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

#include <sparseopt/norm.hpp>

#include "bindings.hpp"
#include "dispatch.hpp"

namespace sparseopt::bind {

namespace {

// One checked item: `values` is the dense array itself when `indices` is None.
struct GradItem {
  py::object indices;
  py::array values;
};

// Re-raises a check's error with the item it is about: "grads[2]: values must ...".
template <class F>
auto for_item(std::size_t i, F&& f) -> decltype(f()) {
  const std::string where = "grads[" + std::to_string(i) + "]: ";
  try {
    return f();
  } catch (const py::type_error& e) {
    throw py::type_error(where + e.what());
  } catch (const py::value_error& e) {
    throw py::value_error(where + e.what());
  } catch (const index_error& e) {
    throw py::index_error(where + e.what());
  }
}

std::vector<GradItem> require_items(const py::list& grads, bool writeable) {
  std::vector<GradItem> items;
  for (std::size_t i = 0; i < grads.size(); ++i) {
    items.push_back(for_item(i, [&]() -> GradItem {
      py::handle item = grads[i];
      if (py::isinstance<py::tuple>(item)) {
        auto pair = py::reinterpret_borrow<py::tuple>(item);
        if (pair.size() != 2)
          throw py::value_error("a row-sparse gradient must be a pair (indices, values), got a tuple of " +
                                std::to_string(pair.size()) + " items");
        const GradientArrays g = require_gradient(pair[0], pair[1], nullptr);
        if (writeable) require_writeable(pair[1], "values");
        return {g.indices, g.values};
      }
      if (!py::isinstance<py::array>(item))
        throw py::type_error("each gradient must be a numpy.ndarray or a tuple (indices, values), got " +
                             type_name(item));
      py::array dense = writeable ? require_writeable(item, "grad") : require_array(item, "grad");
      require_float_dtype(dense, "grad");
      return {py::none(), dense};
    }));
  }
  return items;
}

// The summed norm parts of every item, in list order.
NormParts parts_of_items(const std::vector<GradItem>& items, int num_threads) {
  NormParts total;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const GradItem& item = items[i];
    const NormParts parts = for_item(i, [&]() -> NormParts {
      if (item.indices.is_none()) {
        return dispatch_float(item.values, [&](auto value_tag) {
          using T = typename decltype(value_tag)::type;
          const auto* x = static_cast<const T*>(item.values.data());
          py::gil_scoped_release release;
          return norm_parts(x, static_cast<std::int64_t>(item.values.size()), num_threads);
        });
      }
      const GradientArrays g{py::reinterpret_borrow<py::array>(item.indices), item.values};
      return dispatch(g.values, g.indices, [&](auto value_tag, auto index_tag) {
        using T = typename decltype(value_tag)::type;
        using I = typename decltype(index_tag)::type;
        const RowSparse<T, I> grad = row_sparse_of<T, I>(g);
        py::gil_scoped_release release;
        return norm_parts(grad, plan_coalesce(grad.indices, grad.size, -1, num_threads), num_threads);
      });
    });
    total.add(parts);
  }
  return total;
}

double grad_norm(const py::list& grads, double ord, int num_threads) {
  detail::resolve_threads(num_threads);
  total_norm(NormParts{}, ord);  // checks ord before any work
  return total_norm(parts_of_items(require_items(grads, false), num_threads), ord);
}

double clip_grad_norm(const py::list& grads, double max_norm, double ord, bool error_if_nonfinite,
                      int num_threads) {
  detail::resolve_threads(num_threads);
  total_norm(NormParts{}, ord);
  if (!(max_norm >= 0.0))
    throw py::value_error("max_norm must be >= 0, got " + std::to_string(max_norm));
  std::vector<GradItem> items = require_items(grads, true);
  const double total = total_norm(parts_of_items(items, num_threads), ord);
  if (error_if_nonfinite && !std::isfinite(total))
    throw py::value_error("the total norm of the gradients is " + std::to_string(total) +
                          ", so nothing was scaled; pass error_if_nonfinite=False to scale by it anyway");
  const double coefficient = clip_coefficient(total, max_norm);
  if (!(coefficient == 1.0)) {
    for (GradItem& item : items) {
      dispatch_float(item.values, [&](auto value_tag) {
        using T = typename decltype(value_tag)::type;
        auto* x = static_cast<T*>(item.values.mutable_data());
        py::gil_scoped_release release;
        scale_in_place(x, static_cast<std::int64_t>(item.values.size()), coefficient, num_threads);
      });
    }
  }
  return total;
}

}  // namespace

void bind_norm(py::module_& m) {
  m.def("grad_norm", &grad_norm, py::arg("grads"), py::arg("ord"), py::arg("num_threads"),
        "Total norm of a list of dense and row-sparse (coalesced) gradients.");
  m.def("clip_grad_norm", &clip_grad_norm, py::arg("grads"), py::arg("max_norm"), py::arg("ord"),
        py::arg("error_if_nonfinite"), py::arg("num_threads"),
        "Scale the gradients in place so that their total norm is at most max_norm; returns the norm before.");
}

}  // namespace sparseopt::bind
