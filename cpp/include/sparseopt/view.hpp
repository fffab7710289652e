// Non-owning views of the two things every kernel works on: a parameter table and a row-sparse
// gradient. The caller owns the memory (a NumPy array, a std::vector, shared memory).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "config.hpp"

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

// Where a prefetched row goes (a hint: no effect on results): a row needed within a few
// iterations to L1 (PrefetchNear), one needed later to L2 only (PrefetchFar). A core has only a
// couple of dozen L1 misses in flight, so hints to L1 alone cap how many scattered rows are on
// their way from DRAM; far hints wait in L2's own, longer queue, and a row asked for far ahead
// is in L2 by the time its near hint brings it on. Loops over scattered rows ask for the row
// prefetch_far_rows items ahead (far) and the one prefetch_near_rows ahead (near): measured on
// a 1,000,000 x 64 float32 table (AMD EPYC, bench/README.md), the fused SGD step over 16K
// scattered rows ran 1.3x faster (Adagrad 1.5-1.8x) than with near hints 16 rows ahead alone.
template <int Locality>
struct PrefetchTo {
  static constexpr int locality = Locality;  // __builtin_prefetch's: 3 = L1, 2 = L2
};
using PrefetchNear = PrefetchTo<3>;
using PrefetchFar = PrefetchTo<2>;
inline constexpr std::int64_t prefetch_near_rows = 8, prefetch_far_rows = 32;

// Asks the cache for a row that will be written soon, up to max_lines lines of it (a hint: no
// effect on results), into L1 (PrefetchNear, the default) or L2 (PrefetchFar).
// Always inlined: GCC finds that an out-of-line function which only prefetches has no effect
// and deletes the calls to it (which it does in simd.hpp's AVX2 copies of loops, where it
// does not inline this on its own); the empty asm below keeps the callers of this one alive.
template <class T, int Locality = 3>
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
inline void prefetch_row(const T* row, std::int64_t row_width, PrefetchTo<Locality> = {}) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  constexpr std::int64_t line = 64, max_lines = 8;
  const std::int64_t bytes = row_width * std::int64_t(sizeof(T));
  const char* p = reinterpret_cast<const char*>(row);
  // From the line holding the row's first byte to the one holding its last (capped): a row
  // that does not start on a line boundary ends in one line more than bytes / line.
  const std::uintptr_t first = reinterpret_cast<std::uintptr_t>(p) & ~std::uintptr_t(line - 1);
  const std::int64_t span = std::min<std::int64_t>(bytes + std::int64_t(reinterpret_cast<std::uintptr_t>(p) - first),
                                                   line * max_lines);
  // Near: a write hint (prefetchw where the build allows it). Far: a read hint, since GCC
  // turns any write hint into prefetchw, which ignores the level and fills L1.
  for (std::int64_t off = 0; off < span; off += line)
    __builtin_prefetch(reinterpret_cast<const char*>(first) + off, Locality >= 3 ? 1 : 0, Locality);
  // An empty volatile asm: it emits nothing, but a function that contains it has an effect
  // as far as GCC is concerned. Without it GCC deletes calls to an out-of-line callable that
  // only prefetches (an optimizer's prefetch lambda too large to inline, say) as calls without
  // effect -- which left every row of a step a demand miss: lazy SGD ran at half speed.
  __asm__ __volatile__("" : : "r"(p));
#else
  (void)row;
  (void)row_width;
#endif
}

// Far hints in batches, where a loop's rows spread over more memory than the TLB maps. A
// prefetch that misses the TLB cannot retire before its page walk, so it holds up the
// instructions after it; one far hint per row, spread among a heavy row's arithmetic (Adam's),
// leaves only a walk or two under way at a time. The far hints of prefetch_far_batch rows
// issued together put as many walks in flight. Measured (bench/README.md): lazy Adam over 16K
// rows of three 16M x 64 float32 arrays on 2 MB pages, 1.68 -> 1.02 ms; of three 4M-row arrays
// (1 GB each, 3 GB: about what 1,536 TLB entries of 2 MB map), 1.37-1.40 -> 1.25-1.28 ms; at 1M
// rows, which the TLB maps on 2 MB pages, the batches cost 2-6%, so they start at
// prefetch_batch_min_bytes of one array. (On 4 KB pages a 1M-row table walks too, and batches
// would gain 25% there.)
inline constexpr std::int64_t prefetch_far_batch = 8;
inline constexpr std::int64_t prefetch_batch_min_bytes = std::int64_t(1) << 29;
static_assert((prefetch_far_batch & (prefetch_far_batch - 1)) == 0,
              "prefetch_ahead picks batch starts with a mask: prefetch_far_batch is a power of two");

// The far-hint batch for a loop whose rows lie within `spread_bytes` of one array: 1 (a far
// hint per item) or prefetch_far_batch.
inline std::int64_t far_batch(std::int64_t spread_bytes) noexcept {
  return spread_bytes >= prefetch_batch_min_bytes ? prefetch_far_batch : 1;
}

// The hints of a loop over items [0, n) whose rows are scattered, at item u:
// fetch(u + prefetch_far_rows, PrefetchFar{}) and fetch(u + prefetch_near_rows, PrefetchNear{})
// (items past the end are not asked for). With a batch of B > 1 (far_batch()), the far hints
// go out at every B-th item, for the B items from u + prefetch_far_rows on; B must be a power of
// two. Batches start at multiples of B, not at a thread's first item, so a thread whose range
// starts between two loses the far hints of fewer than B items once (parallel_for gives a thread
// one range, thousands of items long where batches pay).
template <class Fetch>
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
inline void prefetch_ahead(std::int64_t u, std::int64_t n, Fetch&& fetch, std::int64_t batch = 1) {
  if ((u & (batch - 1)) == 0) {
    const std::int64_t end = std::min(n, u + prefetch_far_rows + batch);
    for (std::int64_t v = u + prefetch_far_rows; v < end; ++v) fetch(v, PrefetchFar{});
  }
  if (u + prefetch_near_rows < n) fetch(u + prefetch_near_rows, PrefetchNear{});
}

// Kernels update rows through non-aliasing pointers: arrays they write must not overlap.
inline void require_disjoint(const void* a, std::int64_t a_bytes, const char* a_name,
                             const void* b, std::int64_t b_bytes, const char* b_name) {
  const auto x = reinterpret_cast<std::uintptr_t>(a), y = reinterpret_cast<std::uintptr_t>(b);
  const bool overlap = a_bytes > 0 && b_bytes > 0 && x < y + std::uintptr_t(b_bytes) &&
                       y < x + std::uintptr_t(a_bytes);
  require(!overlap, a_name, " and ", b_name, " must not share memory; pass separate arrays");
}

template <class T>
std::int64_t byte_size(const Table<T>& t) noexcept {
  return t.num_rows * t.row_width * std::int64_t(sizeof(T));
}

// The arrays one call writes, param first: each array added must not share memory with one
// added before, and require_apart_from() checks what the call reads against all of them.
// Fixed capacity, so that a step allocates nothing for its checks.
class WrittenArrays {
 public:
  static constexpr int capacity = 12;

  template <class T>
  explicit WrittenArrays(const Table<T>& param) {
    add(param.data, byte_size(param), "param");
  }

  // An array of `bytes` bytes at `data` (null or empty arrays are skipped: they hold nothing).
  WrittenArrays& add(const void* data, std::int64_t bytes, const char* name) {
    if (data == nullptr || bytes <= 0) return *this;
    require(count_ < capacity, "internal: more than ", capacity, " written arrays");
    for (int i = 0; i < count_; ++i)
      require_disjoint(items_[i].data, items_[i].bytes, items_[i].name, data, bytes, name);
    items_[count_++] = Item{data, bytes, name};
    return *this;
  }

  template <class T>
  WrittenArrays& add(const Table<T>& t, const char* name) {
    return add(t.data, byte_size(t), name);
  }

  // An array the call only reads (gradient values, indices) must not share memory with any
  // array it writes: the kernel would read values it has already changed.
  void require_apart_from(const void* data, std::int64_t bytes, const char* name) const {
    for (int i = 0; i < count_; ++i)
      require_disjoint(items_[i].data, items_[i].bytes, items_[i].name, data, bytes, name);
  }

 private:
  struct Item {
    const void* data;
    std::int64_t bytes;
    const char* name;
  };
  Item items_[capacity] = {};
  int count_ = 0;
};

template <class T, class U>
void require_same_rows(const Table<T>& table, const Table<U>& other, const char* name) {
  require(other.num_rows == table.num_rows && other.row_width == table.row_width, name,
          " must have the parameter's shape: ", table.num_rows, " rows of ", table.row_width,
          " elements, got ", other.num_rows, " rows of ", other.row_width);
  require(other.data != nullptr || table.num_rows * table.row_width == 0, name, " is null");
  require_disjoint(table.data, byte_size(table), "param", other.data, byte_size(other), name);
}

}  // namespace detail
}  // namespace sparseopt
