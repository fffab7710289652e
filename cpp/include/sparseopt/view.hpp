// Non-owning views of the two things every kernel works on: a parameter table and a row-sparse
// gradient. The caller owns the memory (a NumPy array, a std::vector, shared memory).
#pragma once

#include <cstddef>
#include <cstdint>

#include "errors.hpp"

namespace sparseopt {

// A C-contiguous table of num_rows rows of row_width elements (shape (num_rows, *row_shape)
// flattened per row). T may be const for read-only tables.
template <class T>
struct Table {
  T* data = nullptr;
  std::int64_t num_rows = 0;
  std::int64_t row_width = 0;

  T* row(std::int64_t r) const noexcept { return data + r * row_width; }
};

// A row-sparse gradient: values[k] (row_width elements) belongs to row indices[k].
// Indices may repeat; repeats are summed before an optimizer applies the update.
template <class T, class I>
struct RowSparse {
  const I* indices = nullptr;
  const T* values = nullptr;
  std::int64_t size = 0;  // number of (index, value row) pairs
  std::int64_t row_width = 0;

  const T* value_row(std::int64_t k) const noexcept { return values + k * row_width; }
};

namespace detail {

template <class T, class U>
void require_same_rows(const Table<T>& table, const Table<U>& other, const char* name) {
  require(other.num_rows == table.num_rows && other.row_width == table.row_width, name,
          " must have the parameter's shape: ", table.num_rows, " rows of ", table.row_width,
          " elements, got ", other.num_rows, " rows of ", other.row_width);
  require(other.data != nullptr || table.num_rows * table.row_width == 0, name, " is null");
}

}  // namespace detail
}  // namespace sparseopt
