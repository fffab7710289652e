// Top-k along rows on the device: a warp per row selects its k best elements one at a time,
// best first -- each pass, every lane finds the best of its elements ranked behind the last
// one selected, and the warp keeps the best of the lanes -- with the CPU's ranking
// (topk.hpp's TopkRank: ties to the lower index, NaN above every number, -0.0 == 0.0). So the
// output is the CPU's sorted output, bit for bit. O(k n / 32) per row: simple first.
#include <cstdint>

#include "groups.cuh"

#include <sparseopt/topk.hpp>

namespace sparseopt {
namespace cuda {
namespace {

template <class R, class T>
__global__ void topk_kernel(const T* x, std::int64_t rows, std::int64_t n, std::int64_t k, T* values,
                            std::int64_t* indices) {
  using U = typename R::U;
  const std::int64_t r = warp_index();
  if (r >= rows) return;
  const T* row = x + r * n;
  U last_key = 0;
  std::int64_t last = -1;  // nothing selected yet
  for (std::int64_t s = 0; s < k; ++s) {
    U best_key = 0;
    std::int64_t best = -1;
    for (std::int64_t j = lane_index(); j < n; j += warp_size) {
      const U kj = R::key(row[j]);
      const bool behind_last = last < 0 || R::ahead(last_key, last, kj, j);
      if (behind_last && (best < 0 || R::ahead(kj, j, best_key, best))) {
        best_key = kj;
        best = j;
      }
    }
    for (int offset = warp_size / 2; offset > 0; offset /= 2) {
      const U other_key = __shfl_xor_sync(full_warp, best_key, offset);
      const std::int64_t other = __shfl_xor_sync(full_warp, best, offset);
      if (other >= 0 && (best < 0 || R::ahead(other_key, other, best_key, best))) {
        best_key = other_key;
        best = other;
      }
    }
    if (lane_index() == 0) {
      values[r * k + s] = row[best];
      indices[r * k + s] = best;
    }
    last_key = best_key;
    last = best;
  }
}

}  // namespace

template <class T>
void topk_rows(const T* x, std::int64_t rows, std::int64_t n, std::int64_t k, T* values, std::int64_t* indices,
               const TopkOptions& options, cudaStream_t stream) {
  sparseopt::detail::require(rows >= 0 && n >= 0, "rows and n must be >= 0, got ", rows, " and ", n);
  sparseopt::detail::require(k >= 1 && k <= n, "k must be in [1, n] where n = ", n,
                             " is the length of the last axis, got k = ", k);
  if (rows == 0) return;
  sparseopt::detail::require(x != nullptr && values != nullptr && indices != nullptr,
                             "topk_rows: x, values and indices must not be null");
  {  // as the CPU checks: pointer ranges only
    using sparseopt::detail::require_disjoint;
    const std::int64_t x_bytes = rows * n * std::int64_t(sizeof(T)), v_bytes = rows * k * std::int64_t(sizeof(T));
    const std::int64_t i_bytes = rows * k * 8;
    require_disjoint(values, v_bytes, "values", indices, i_bytes, "indices");
    require_disjoint(values, v_bytes, "values", x, x_bytes, "x");
    require_disjoint(indices, i_bytes, "indices", x, x_bytes, "x");
  }
  auto launch = [&](auto kernel) {
    kernel<<<detail::blocks_for(rows, detail::warps_per_block), detail::block_threads, 0, stream>>>(
        x, rows, n, k, values, indices);
    detail::check(cudaGetLastError(), "a kernel launch");
  };
  using sparseopt::detail::TopkRank;
  if (options.largest)
    options.magnitude ? launch(topk_kernel<TopkRank<T, true, true>, T>) : launch(topk_kernel<TopkRank<T, true, false>, T>);
  else
    options.magnitude ? launch(topk_kernel<TopkRank<T, false, true>, T>)
                      : launch(topk_kernel<TopkRank<T, false, false>, T>);
}

template void topk_rows<float>(const float*, std::int64_t, std::int64_t, std::int64_t, float*, std::int64_t*,
                               const TopkOptions&, cudaStream_t);
template void topk_rows<double>(const double*, std::int64_t, std::int64_t, std::int64_t, double*, std::int64_t*,
                                const TopkOptions&, cudaStream_t);

}  // namespace cuda
}  // namespace sparseopt
