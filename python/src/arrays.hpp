// Argument checks for NumPy arrays handed to the kernels. Zero-copy is the contract: an array
// of the wrong kind is a TypeError that says what to pass, never a silent conversion (the
// kernel would then update a hidden copy instead of the user's array).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include <sparseopt/view.hpp>

namespace sparseopt::bind {

namespace py = pybind11;

inline std::string type_name(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

inline std::string dtype_name(const py::array& a) { return py::str(a.dtype()); }

// The same for a shape not (yet) an array's.
inline std::string shape_str(const std::vector<py::ssize_t>& shape) {
  std::string s = "(";
  for (std::size_t d = 0; d < shape.size(); ++d) s += (d ? ", " : "") + std::to_string(shape[d]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    if (d) s += ", ";
    s += std::to_string(a.shape(d));
  }
  return s + (a.ndim() == 1 ? ",)" : ")");
}

template <class T>
bool has_dtype(const py::array& a) {
  return py::isinstance<py::array_t<T>>(a);  // dtype equivalence, byte order included
}

inline bool is_torch_tensor(py::handle obj) {
  const std::string module = py::str(py::type::handle_of(obj).attr("__module__"));
  return module.rfind("torch", 0) == 0;
}

// `obj` as an ndarray that kernels may read in place: C-contiguous and aligned. For an array
// the kernel only reads, the hint may suggest a conversion (the copy is only read); for one it
// writes (`written`), never: the kernel would then update the copy, not the caller's array.
inline py::array require_array(py::handle obj, const char* name, bool written = false) {
  const std::string n = name;
  if (!py::isinstance<py::array>(obj)) {
    std::string hint;
    if (written && is_torch_tensor(obj))
      hint = "; for torch tensors use the optimizers of sparseopt.torch, which update the "
             "tensor's own memory";
    else if (written)
      hint = "; sparseopt updates that very array in place, so it cannot take a " +
             type_name(obj) + " (a converted copy would be updated instead of your data): "
             "create the table as a numpy array and keep using it, one optimizer per table";
    else if (is_torch_tensor(obj))
      hint = "; pass " + n + ".numpy() (a CPU tensor's memory, no copy)";
    else
      hint = "; pass np.ascontiguousarray(" + n + ", dtype=...)";
    throw py::type_error(n + " must be a numpy.ndarray, got " + type_name(obj) + hint);
  }
  auto a = py::reinterpret_borrow<py::array>(obj);
  const int flags = a.flags();
  const bool contiguous = flags & py::array::c_style;
  const bool aligned = flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_;
  if (!contiguous || !aligned) {
    const std::string what = contiguous ? " must be aligned" : " must be C-contiguous";
    if (written)
      throw py::type_error(n + what + ": sparseopt updates it in place and never copies "
                           "silently (a copy would be updated instead of your array); allocate "
                           "it so (np.ascontiguousarray once, then keep using the array it "
                           "returns)");
    throw py::type_error(n + what + " (sparseopt never copies silently); pass "
                         "np.ascontiguousarray(" + n + ")");
  }
  return a;
}

// An array the kernel writes in place.
inline py::array require_writeable(py::handle obj, const char* name) {
  py::array a = require_array(obj, name, true);
  if (!a.writeable())
    throw py::type_error(std::string(name) +
                         " is read-only; the kernel updates it in place, pass a writeable array");
  return a;
}

// The end of a dtype error: how to get `want` for `name`. An array the kernel writes in place
// cannot be converted (the copy would be updated), so it must be created with that dtype.
inline std::string dtype_hint(const char* name, const std::string& want, bool written) {
  if (written)
    return std::string("; sparseopt updates ") + name + " in place, so create it with " + want +
           " (a converted copy would be updated instead)";
  return std::string("; pass ") + name + ".astype(" + want + ")";
}

inline void require_float_dtype(const py::array& a, const char* name, bool written = false) {
  if (!has_dtype<float>(a) && !has_dtype<double>(a))
    throw py::type_error(std::string(name) + " must have dtype float32 or float64, got " +
                         dtype_name(a) + dtype_hint(name, written ? "dtype float32 or float64"
                                                                  : "np.float32", written));
}

// Whether a has the float32/float64 dtype of `like`.
inline bool same_float_dtype(const py::array& a, const py::array& like) {
  return has_dtype<float>(like) ? has_dtype<float>(a) : has_dtype<double>(a);
}

inline void require_same_dtype(const py::array& a, const py::array& like, const char* name,
                               const char* like_name, bool written = false) {
  if (!same_float_dtype(a, like))
    throw py::type_error(std::string(name) + " must have the dtype of " + like_name + " (" +
                         dtype_name(like) + "), got " + dtype_name(a) +
                         dtype_hint(name, written ? "dtype " + dtype_name(like)
                                                  : std::string(like_name) + ".dtype", written));
}

inline void require_index_dtype(const py::array& a, const char* name) {
  if (!has_dtype<std::int32_t>(a) && !has_dtype<std::int64_t>(a))
    throw py::type_error(std::string(name) + " must have dtype int32 or int64, got " +
                         dtype_name(a) + "; pass " + name + ".astype(np.int64)");
}

// Rows and elements per row of a table-shaped array: shape (num_rows, *row_shape).
template <class T>
Table<T> table_of(py::array& a) {
  std::int64_t width = 1;
  for (py::ssize_t d = 1; d < a.ndim(); ++d) width *= a.shape(d);
  return Table<T>{static_cast<T*>(a.mutable_data()), a.shape(0), width};
}

// The parameter table: a writeable float32/float64 array with at least one dimension.
inline py::array require_param(py::handle obj) {
  py::array param = require_writeable(obj, "param");
  require_float_dtype(param, "param", true);
  if (param.ndim() < 1)
    throw py::value_error("param must have at least one dimension (num_rows, *row_shape), got a 0-d array");
  return param;
}

// What a rejected state array's dtype should have been: `wanted` for the message ("the dtype of
// param (float32)"), `dtype` the one to create it with ("float32").
struct StateDtype {
  std::string wanted, dtype;
};

// A state array, updated in place: writeable, of a dtype `dtype_ok(a)` accepts (else
// `expected()`, a StateDtype, says which), and of the parameter's shape, or with per_row of
// shape (num_rows,): state kept once per row instead of once per element. Float tables
// (require_float_state) and half tables (require_half_state) differ only in the dtype rule.
template <class DtypeOk, class Expected>
py::array require_state(py::handle obj, const py::array& param, const char* name, bool per_row,
                        DtypeOk&& dtype_ok, Expected&& expected) {
  py::array a = require_writeable(obj, name);
  if (!dtype_ok(a)) {
    const StateDtype want = expected();
    throw py::type_error(std::string(name) + " must have " + want.wanted + ", got " + dtype_name(a) +
                         dtype_hint(name, "dtype " + want.dtype, true));
  }
  if (per_row) {
    if (a.ndim() != 1 || a.shape(0) != param.shape(0))
      throw py::value_error(std::string(name) + " must have shape (" + std::to_string(param.shape(0)) +
                            ",), one value per row of param, got " + shape_str(a));
    return a;
  }
  bool same = a.ndim() == param.ndim();
  for (py::ssize_t d = 0; same && d < a.ndim(); ++d) same = a.shape(d) == param.shape(d);
  if (!same)
    throw py::value_error(std::string(name) + " must have the parameter's shape " + shape_str(param) + ", got " +
                          shape_str(a));
  return a;
}

// A float32/float64 table's state array: the parameter's dtype.
inline py::array require_float_state(py::handle obj, const py::array& param, const char* name, bool per_row) {
  return require_state(
      obj, param, name, per_row, [&](const py::array& a) { return same_float_dtype(a, param); },
      [&] { return StateDtype{"the dtype of param (" + dtype_name(param) + ")", dtype_name(param)}; });
}

// A per-row int64 counter array of shape (num_rows,), writeable.
inline std::int64_t* require_row_counts(py::handle obj, const py::array& param, const char* name) {
  py::array a = require_writeable(obj, name);
  if (!has_dtype<std::int64_t>(a))
    throw py::type_error(std::string(name) + " must have dtype int64, got " + dtype_name(a));
  if (a.ndim() != 1 || a.shape(0) != param.shape(0))
    throw py::value_error(std::string(name) + " must have shape (" + std::to_string(param.shape(0)) +
                          ",), got " + shape_str(a));
  return static_cast<std::int64_t*>(a.mutable_data());
}

// indices (1-D int32/int64) and values (shape (len(indices), *row_shape)) of a row-sparse
// gradient; row_shape is taken from `table` when given, else from values itself.
struct GradientArrays {
  py::array indices;
  py::array values;
};

// check_values(values) checks the values' dtype where the caller has its own rule (a half
// table's float32 gradient); by default (require_gradient) they must have the table's dtype, or
// without a table float32 or float64. The table, when given, gives their shape.
template <class CheckValues>
GradientArrays require_gradient_with(py::handle indices_obj, py::handle values_obj, const py::array* table,
                                     CheckValues&& check_values) {
  GradientArrays g{require_array(indices_obj, "indices"), require_array(values_obj, "values")};
  require_index_dtype(g.indices, "indices");
  if (g.indices.ndim() != 1)
    throw py::value_error("indices must be 1-D, got shape " + shape_str(g.indices) +
                          "; pass indices.ravel() with values reshaped to match");
  check_values(g.values);
  const py::ssize_t n = g.indices.shape(0);
  bool ok = g.values.ndim() >= 1 && g.values.shape(0) == n;
  if (table) {
    ok = ok && g.values.ndim() == table->ndim();
    for (py::ssize_t d = 1; ok && d < table->ndim(); ++d) ok = g.values.shape(d) == table->shape(d);
  }
  if (!ok) {
    std::string want = "(" + std::to_string(n);
    if (table)
      for (py::ssize_t d = 1; d < table->ndim(); ++d) want += ", " + std::to_string(table->shape(d));
    want += table ? (table->ndim() == 1 ? ",)" : ")") : ", ...)";
    throw py::value_error("values must have shape " + want +
                          " (len(indices), *param.shape[1:]), got " + shape_str(g.values));
  }
  return g;
}

inline GradientArrays require_gradient(py::handle indices_obj, py::handle values_obj,
                                       const py::array* table) {
  return require_gradient_with(indices_obj, values_obj, table, [table](const py::array& values) {
    if (table)
      require_same_dtype(values, *table, "values", "param");
    else
      require_float_dtype(values, "values");
  });
}

template <class T, class I>
RowSparse<T, I> row_sparse_of(const GradientArrays& g) {
  std::int64_t width = 1;
  for (py::ssize_t d = 1; d < g.values.ndim(); ++d) width *= g.values.shape(d);
  return RowSparse<T, I>{static_cast<const I*>(g.indices.data()),
                         static_cast<const T*>(g.values.data()), g.indices.shape(0), width};
}

}  // namespace sparseopt::bind
