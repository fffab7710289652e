// Device-side building blocks of sparseopt's CUDA kernels, for CUDA code of your own (include
// from a .cu file compiled by nvcc; link sparseopt::cuda). The per-element update formulas are
// <sparseopt/optim/formulas.hpp> (sparseopt::formulas), shared with the CPU.
#pragma once

#include <cstdint>

#include <sparseopt/optim/formulas.hpp>

namespace sparseopt {
namespace cuda {

inline constexpr int warp_size = 32;
inline constexpr unsigned full_warp = 0xffffffffu;

// The positions of each distinct index of a row-sparse gradient, grouped: group u is row
// rows[u], its positions positions[starts[u] : starts[u] + counts[u]] ascending (the order the
// indices appear). *num_groups groups (a device value); capacity bounds it on the host.
template <class I>
struct Groups {
  const I* rows = nullptr;
  const std::int64_t* positions = nullptr;
  const std::int64_t* starts = nullptr;
  const std::int64_t* counts = nullptr;
  const std::int64_t* num_groups = nullptr;
  std::int64_t capacity = 0;
};

// The warp index of this thread in a one-dimensional launch, and its lane.
__device__ __forceinline__ std::int64_t warp_index() {
  return (std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / warp_size;
}
__device__ __forceinline__ int lane_index() { return int(threadIdx.x % warp_size); }

// Element j of the summed gradient of group u: its first value, then each next one added, in
// the order they appear (the CPU's coalescing order, so the same bits).
template <class T, class I>
__device__ __forceinline__ T summed_element(const Groups<I>& groups, std::int64_t u, const T* values,
                                            std::int64_t width, std::int64_t j) {
  const std::int64_t* pos = groups.positions + groups.starts[u];
  const std::int64_t count = groups.counts[u];
  T g = values[pos[0] * width + j];
  for (std::int64_t k = 1; k < count; ++k) g += values[pos[k] * width + j];
  return g;
}

}  // namespace cuda
}  // namespace sparseopt
