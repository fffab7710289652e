// sparseopt._core: gather_sum (EmbeddingBag, CSR x dense) and its row-sparse backward, for
// bags given as (indptr, indices, weights) arrays or as a SciPy CSR matrix's parts.
#include <sparseopt/gather.hpp>
#include <sparseopt/half_gather.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "bags.hpp"
#include "bindings.hpp"
#include "half_arrays.hpp"

namespace sparseopt::bind {

namespace {

// A float32/float64 array of at least one dimension: (rows, *row_shape).
py::array require_float_table(py::handle obj, const char* name) {
  py::array a = require_array(obj, name);
  require_float_dtype(a, name);
  if (a.ndim() < 1)
    throw py::value_error(std::string(name) + " must have at least one dimension (rows, *row_shape), got a 0-d array");
  return a;
}

// Shape (rows, *like.shape[1:]).
std::vector<py::ssize_t> rows_like(py::ssize_t rows, const py::array& like) {
  std::vector<py::ssize_t> shape(like.shape(), like.shape() + like.ndim());
  shape[0] = rows;
  return shape;
}


// The forward's output: a new array of `dtype` and `shape`, or out_obj checked against them
// (check_dtype(out) throws for a wrong dtype).
template <class CheckDtype>
py::array forward_out(py::handle out_obj, const py::dtype& dtype, const std::vector<py::ssize_t>& shape,
                      CheckDtype&& check_dtype) {
  if (out_obj.is_none()) return py::array(dtype, shape);
  py::array out = require_writeable(out_obj, "out");
  check_dtype(out);
  bool ok = out.ndim() == py::ssize_t(shape.size());
  for (py::ssize_t d = 0; ok && d < out.ndim(); ++d) ok = out.shape(d) == shape[d];
  if (!ok)
    throw py::value_error("out must have shape " + shape_str(shape) + " (num_bags, *table.shape[1:]), got " +
                          shape_str(out));
  return out;
}

// A float16/bfloat16 table: float32 weights and output (gather_sum_half).
py::array forward_half(py::handle table_obj, py::handle indptr_obj, py::handle indices_obj, py::handle weights_obj,
                       bool mean, py::handle out_obj, int num_threads, const Names& names) {
  py::array table = require_array(table_obj, "table");
  if (table.ndim() < 1)
    throw py::value_error("table must have at least one dimension (rows, *row_shape), got a 0-d array");
  const py::array float32_like = py::array_t<float>(0);
  const BagArrays bags = require_bags(indptr_obj, indices_obj, weights_obj, float32_like, "float32", names);
  py::array out = forward_out(out_obj, py::dtype::of<float>(), rows_like(bags.num_bags, table), [&](const py::array& o) {
    if (!has_dtype<float>(o))
      throw py::type_error("out must have dtype float32 for a " + dtype_name(table) + " table (bags are summed "
                           "in float32), got " + dtype_name(o) + "; create it with dtype float32");
  });
  dispatch_half(element_of(table), [&](auto half_tag) {
    using H = typename decltype(half_tag)::type;
    dispatch_index(bags.indices, [&](auto index_tag) {
      using I = typename decltype(index_tag)::type;
      const Table<const H> t = read_table<H>(table);
      const Table<float> o = table_of<float>(out);
      const Bags<float, I> b = bags.view<float, I>();
      py::gil_scoped_release release;
      gather_sum_half(t, b, o, reduction(mean), num_threads, names.bag);
    });
  });
  return out;
}

py::array forward(py::handle table_obj, py::handle indptr_obj, py::handle indices_obj, py::handle weights_obj,
                  bool mean, py::handle out_obj, int num_threads, const Names& names) {
  detail::resolve_threads(num_threads);
  if (is_half_array(table_obj))
    return forward_half(table_obj, indptr_obj, indices_obj, weights_obj, mean, out_obj, num_threads, names);
  py::array table = require_float_table(table_obj, "table");
  const BagArrays bags = require_bags(indptr_obj, indices_obj, weights_obj, table, "table", names);
  py::array out = forward_out(out_obj, table.dtype(), rows_like(bags.num_bags, table), [&](const py::array& o) {
    require_same_dtype(o, table, "out", "table", true);
  });
  dispatch(table, bags.indices, [&](auto value_tag, auto index_tag) {
    using T = typename decltype(value_tag)::type;
    using I = typename decltype(index_tag)::type;
    const Table<const T> t = read_table<T>(table);
    const Table<T> o = table_of<T>(out);
    const Bags<T, I> b = bags.view<T, I>();
    py::gil_scoped_release release;
    gather_sum(t, b, o, reduction(mean), num_threads, names.bag);
  });
  return out;
}

py::tuple backward(py::handle grad_out_obj, py::handle indptr_obj, py::handle indices_obj,
                   py::handle weights_obj, bool mean, std::int64_t num_rows, int num_threads,
                   const Names& names, const char* num_bags_hint) {
  detail::resolve_threads(num_threads);
  if (num_rows < 0) throw py::value_error("num_rows must be >= 0, got " + std::to_string(num_rows));
  py::array grad_out = require_float_table(grad_out_obj, "grad_out");
  const BagArrays bags = require_bags(indptr_obj, indices_obj, weights_obj, grad_out, "grad_out", names);
  if (grad_out.shape(0) != bags.num_bags)
    throw py::value_error("grad_out must have one row per bag, shape (" + std::to_string(bags.num_bags) +
                          ", *row_shape) with " + num_bags_hint + ", got " + shape_str(grad_out) +
                          names.offsets_hint(grad_out.shape(0), bags.num_bags));
  return dispatch(grad_out, bags.indices, [&](auto value_tag, auto index_tag) -> py::tuple {
    using T = typename decltype(value_tag)::type;
    using I = typename decltype(index_tag)::type;
    const Table<const T> g = read_table<T>(grad_out);
    const Bags<T, I> b = bags.view<T, I>();
    thread_local GatherPlan<I> plan;  // reused between calls: no fresh buffers per batch
    {
      py::gil_scoped_release release;
      plan.build(b, num_rows, g.row_width, reduction(mean), names.bag, num_threads);
    }
    py::array_t<I> rows(plan.size());
    py::array_t<T> values(rows_like(plan.size(), grad_out));
    const Table<T> v = table_of<T>(values);
    {
      py::gil_scoped_release release;
      gather_sum_backward(g, b, plan, rows.mutable_data(), v, reduction(mean), num_threads, names.bag);
    }
    return py::make_tuple(rows, values);
  });
}

// Checks x.shape = (x_rows, x_cols) against x.indptr.
void check_csr_shape(std::int64_t x_rows, std::int64_t x_cols, py::handle indptr) {
  if (x_rows < 0 || x_cols < 0)
    throw py::value_error("x.shape must be non-negative, got (" + std::to_string(x_rows) + ", " +
                          std::to_string(x_cols) + ")");
  if (py::isinstance<py::array>(indptr)) {
    const auto a = py::reinterpret_borrow<py::array>(indptr);
    if (a.ndim() == 1 && a.shape(0) != x_rows + 1)
      throw py::value_error("x.indptr must have x.shape[0] + 1 = " + std::to_string(x_rows + 1) +
                            " entries, got " + std::to_string(a.shape(0)));
  }
}

}  // namespace

void bind_gather(py::module_& m) {
  m.def(
      "gather_sum",
      [](py::handle table, py::handle indptr, py::handle indices, py::handle weights, bool mean,
         py::handle out, int num_threads) {
        return forward(table, indptr, indices, weights, mean, out, num_threads, plain_names);
      },
      py::arg("table"), py::arg("indptr"), py::arg("indices"), py::arg("weights"), py::arg("mean"),
      py::arg("out"), py::arg("num_threads"),
      "out[b] = (weighted) sum or mean of table[indices[indptr[b]:indptr[b+1]]].");
  m.def(
      "gather_sum_backward",
      [](py::handle grad_out, py::handle indptr, py::handle indices, py::handle weights, bool mean,
         std::int64_t num_rows, int num_threads) {
        return backward(grad_out, indptr, indices, weights, mean, num_rows, num_threads, plain_names,
                        "num_bags = len(indptr) - 1");
      },
      py::arg("grad_out"), py::arg("indptr"), py::arg("indices"), py::arg("weights"), py::arg("mean"),
      py::arg("num_rows"), py::arg("num_threads"),
      "(rows, values): the coalesced gradient of the table for gather_sum.");
  m.def(
      "csr_matmul",
      [](py::handle table, std::int64_t x_rows, std::int64_t x_cols, py::handle indptr, py::handle indices,
         py::handle data, py::handle out, int num_threads) {
        check_csr_shape(x_rows, x_cols, indptr);
        py::array t = require_float_table(table, "table");
        if (x_cols != t.shape(0))
          throw py::value_error("x.shape[1] = " + std::to_string(x_cols) + " must equal table.shape[0] = " +
                                std::to_string(t.shape(0)) + " (x @ table needs a table row per column of x)");
        return forward(t, indptr, indices, data, false, out, num_threads, csr_names);
      },
      py::arg("table"), py::arg("x_rows"), py::arg("x_cols"), py::arg("indptr"), py::arg("indices"), py::arg("data"),
      py::arg("out"), py::arg("num_threads"), "x @ table for a CSR matrix x given by its parts.");
  m.def(
      "csr_matmul_backward",
      [](py::handle grad_out, std::int64_t x_rows, std::int64_t x_cols, py::handle indptr, py::handle indices,
         py::handle data, int num_threads) {
        check_csr_shape(x_rows, x_cols, indptr);
        return backward(grad_out, indptr, indices, data, false, x_cols, num_threads, csr_names,
                        "num_bags = x.shape[0]");
      },
      py::arg("grad_out"), py::arg("x_rows"), py::arg("x_cols"), py::arg("indptr"), py::arg("indices"), py::arg("data"),
      py::arg("num_threads"), "(rows, values): the coalesced gradient of table for x @ table.");
  // Testing hook: force the backward's layout ("sorted", "blocked" where it applies) or give the
  // choice back to GatherPlan ("auto"), so that tests see both layouts on small inputs.
  m.def(
      "_set_gather_layout",
      [](const std::string& layout) {
        if (layout != "auto" && layout != "sorted" && layout != "blocked")
          throw py::value_error("layout must be \"auto\", \"sorted\" or \"blocked\", got \"" + layout + "\"");
        set_gather_layout(layout == "sorted"    ? GatherLayout::sorted
                          : layout == "blocked" ? GatherLayout::blocked
                                                : GatherLayout::automatic);
      },
      py::arg("layout"), "Testing hook: the layout of every later gather backward (\"auto\" by default).");
}

}  // namespace sparseopt::bind
