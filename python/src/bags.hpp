// Bags of indices (indptr, indices, optional weights) as the gather bindings and the fused
// optimizer steps take them from Python: checked with the GIL held, then viewed as Bags.
#pragma once

#include <sparseopt/gather.hpp>

#include <string>

#include "dispatch.hpp"

namespace sparseopt::bind {

// What the messages call the arrays, and how to fix a weights dtype: the CSR product names
// x's attributes instead.
struct Names {
  detail::BagNames bag;
  const char* weights_owner;  // a weights dtype is fixed by <owner>.astype(...)
  bool torch_offsets;         // the arrays could be torch's offsets (not a CSR matrix's parts)

  // What to add to a "grad_out has the wrong number of rows" message when it has one row per
  // entry of indptr: the caller most likely passed torch's offsets (one per bag) as indptr.
  std::string offsets_hint(std::int64_t grad_out_rows, std::int64_t num_bags) const {
    if (!torch_offsets || grad_out_rows != num_bags + 1) return "";
    return "; indptr holds num_bags + 1 offsets, the last one len(indices): torch's offsets (one per "
           "bag) become it with len(indices) appended";
  }
};

inline const Names plain_names{{"indptr", "indices", "weights"}, "weights", true};
inline const Names csr_names{{"x.indptr", "x.indices", "x.data"}, "x", false};

struct BagArrays {
  py::array indptr, indices, weights;
  bool has_weights = false;
  std::int64_t num_bags = 0;

  template <class T, class I>
  Bags<T, I> view() const {
    return Bags<T, I>{static_cast<const I*>(indptr.data()), static_cast<const I*>(indices.data()),
                      has_weights ? static_cast<const T*>(weights.data()) : nullptr, num_bags,
                      indices.shape(0)};
  }
};

inline py::array require_1d_index(py::handle obj, const char* name) {
  py::array a = require_array(obj, name);
  require_index_dtype(a, name);
  if (a.ndim() != 1)
    throw py::value_error(std::string(name) + " must be 1-D, got shape " + shape_str(a));
  return a;
}

// indptr and indices: 1-D, one index dtype for both; weights: None or 1-D with one entry per
// index and the dtype of `like` (the table, or grad_out).
inline BagArrays require_bags(py::handle indptr_obj, py::handle indices_obj, py::handle weights_obj,
                       const py::array& like, const char* like_name, const Names& names) {
  BagArrays b;
  b.indptr = require_1d_index(indptr_obj, names.bag.indptr);
  if (b.indptr.shape(0) < 1)
    throw py::value_error(std::string(names.bag.indptr) +
                          " must hold num_bags + 1 >= 1 offsets, got an empty array; pass [0] for no bags");
  b.num_bags = b.indptr.shape(0) - 1;
  b.indices = require_1d_index(indices_obj, names.bag.indices);
  if (has_dtype<std::int32_t>(b.indices) != has_dtype<std::int32_t>(b.indptr))
    throw py::type_error(std::string(names.bag.indices) + " must have the dtype of " + names.bag.indptr +
                         " (" + dtype_name(b.indptr) + "), got " + dtype_name(b.indices) + "; pass " +
                         names.bag.indices + ".astype(" + names.bag.indptr +
                         ".dtype) (offsets share the dtype of the indices, as in torch and SciPy)");
  if (weights_obj.is_none()) return b;
  b.weights = require_array(weights_obj, names.bag.weights);
  b.has_weights = true;
  const bool same = has_dtype<float>(like) ? has_dtype<float>(b.weights) : has_dtype<double>(b.weights);
  if (!same)
    throw py::type_error(std::string(names.bag.weights) + " must have the dtype of " + like_name + " (" +
                         dtype_name(like) + "), got " + dtype_name(b.weights) + "; pass " + names.weights_owner +
                         ".astype(" + like_name + ".dtype)");
  if (b.weights.ndim() != 1 || b.weights.shape(0) != b.indices.shape(0))
    throw py::value_error(std::string(names.bag.weights) + " must have shape (" +
                          std::to_string(b.indices.shape(0)) + ",), one weight per index, got " +
                          shape_str(b.weights));
  return b;
}

// A table the kernel only reads: read-only arrays are fine.
template <class T>
Table<const T> read_table(const py::array& a) {
  std::int64_t width = 1;
  for (py::ssize_t d = 1; d < a.ndim(); ++d) width *= a.shape(d);
  return Table<const T>{static_cast<const T*>(a.data()), a.shape(0), width};
}

inline BagReduction reduction(bool mean) { return mean ? BagReduction::mean : BagReduction::sum; }

}  // namespace sparseopt::bind
