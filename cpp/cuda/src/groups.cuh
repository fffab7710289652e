// Host side of the CUDA kernels: errors, per-call device memory, and the deterministic
// grouping of repeated indices (a stable CUB radix sort of (index, position) pairs).
#pragma once

#include <cstdint>
#include <limits>
#include <mutex>
#include <vector>

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_run_length_encode.cuh>
#include <cub/device/device_scan.cuh>

#include <sparseopt/cuda/device.cuh>
#include <sparseopt/cuda/sparseopt_cuda.hpp>
#include <sparseopt/errors.hpp>

namespace sparseopt {
namespace cuda {
namespace detail {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw cuda_error(sparseopt::detail::concat("sparseopt CUDA: ", what, " failed: ", cudaGetErrorString(status)));
}

// The current device's pool for Scratch, created on first use and kept for the process. It
// keeps up to scratch_pool_keep bytes reserved across synchronizations: the device's default
// pool releases all of its memory at every synchronization (threshold 0), so each step (which
// waits once, for the indices' check) mapped its scratch memory afresh. A pool of our own leaves
// the default pool's settings, which other libraries share, as they are.
inline constexpr std::uint64_t scratch_pool_keep = std::uint64_t(256) << 20;

inline cudaMemPool_t scratch_pool() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  static std::mutex mutex;
  static std::vector<cudaMemPool_t> pools;
  const std::lock_guard<std::mutex> lock(mutex);
  if (std::size_t(device) >= pools.size()) pools.resize(std::size_t(device) + 1, nullptr);
  if (pools[std::size_t(device)] == nullptr) {
    cudaMemPoolProps props{};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device;
    cudaMemPool_t pool = nullptr;
    check(cudaMemPoolCreate(&pool, &props), "cudaMemPoolCreate");
    std::uint64_t keep = scratch_pool_keep;
    const cudaError_t status = cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    if (status != cudaSuccess) cudaMemPoolDestroy(pool);
    check(status, "cudaMemPoolSetAttribute");
    pools[std::size_t(device)] = pool;
  }
  return pools[std::size_t(device)];
}

// Device memory for one call, from scratch_pool(), freed in stream order when the call ends
// (also when it throws).
class Scratch {
 public:
  explicit Scratch(cudaStream_t stream) : stream_(stream) {}
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() {
    for (void* p : blocks_) cudaFreeAsync(p, stream_);
    cudaGetLastError();  // a failed free must not surface as a later call's launch error
  }
  template <class U>
  U* get(std::int64_t count) {
    void* p = nullptr;
    if (count <= 0) return nullptr;
    if (pool_ == nullptr) pool_ = scratch_pool();  // a call that allocates nothing needs none
    check(cudaMallocFromPoolAsync(&p, std::size_t(count) * sizeof(U), pool_, stream_), "cudaMallocFromPoolAsync");
    blocks_.push_back(p);
    return static_cast<U*>(p);
  }
  cudaStream_t stream() const noexcept { return stream_; }

 private:
  cudaStream_t stream_;
  cudaMemPool_t pool_ = nullptr;
  std::vector<void*> blocks_;
};

inline unsigned blocks_for(std::int64_t threads, int per_block) {
  return unsigned((threads + per_block - 1) / per_block);
}

inline constexpr int block_threads = 256;
inline constexpr int warps_per_block = block_threads / warp_size;

template <class I>
__global__ void first_out_of_range(const I* indices, std::int64_t n, std::int64_t num_rows,
                                   unsigned long long* first) {
  const std::int64_t k = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k < n && (indices[k] < 0 || (num_rows >= 0 && std::int64_t(indices[k]) >= num_rows)))
    atomicMin(first, (unsigned long long)k);
}

template <class N>
__global__ void iota(N* out, std::int64_t n) {
  const std::int64_t k = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k < n) out[k] = N(k);
}

// Throws index_error (the CPU's message) for the first index outside [0, num_rows) (num_rows < 0:
// no upper bound). Waits for the stream: nothing is written before the indices are known good.
template <class I>
void check_indices(const I* indices, std::int64_t n, std::int64_t num_rows, const char* name, Scratch& scratch) {
  if (n == 0) return;
  cudaStream_t s = scratch.stream();
  auto* first = scratch.get<unsigned long long>(1);
  check(cudaMemsetAsync(first, 0xff, sizeof *first, s), "cudaMemsetAsync");
  first_out_of_range<<<blocks_for(n, block_threads), block_threads, 0, s>>>(indices, n, num_rows, first);
  check(cudaGetLastError(), "a kernel launch");
  unsigned long long k = 0;
  check(cudaMemcpyAsync(&k, first, sizeof k, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  if (k == std::numeric_limits<unsigned long long>::max()) return;
  I bad = 0;
  check(cudaMemcpy(&bad, indices + k, sizeof bad, cudaMemcpyDeviceToHost), "cudaMemcpy");
  if (num_rows < 0)
    throw index_error(sparseopt::detail::concat(name, "[", k, "] = ", std::int64_t(bad),
                                                " is negative; indices must be >= 0"));
  throw index_error(sparseopt::detail::concat(name, "[", k, "] = ", std::int64_t(bad),
                                              " is out of range for a table of ", num_rows,
                                              " rows; indices must be in [0, ", num_rows, ")"));
}

// CUB's item counts are int.
inline void require_int_size(std::int64_t n) {
  sparseopt::detail::require(n <= std::numeric_limits<int>::max(), "the CUDA kernels take at most 2^31 - 1 indices "
                             "per call, got ", n, "; split the batch");
}

// Groups the positions of equal indices (checked to be in [0, num_rows) first; num_rows < 0:
// only >= 0).
template <class I>
Groups<I> group_indices(const I* indices, std::int64_t n, std::int64_t num_rows, const char* name,
                        Scratch& scratch) {
  Groups<I> g;
  check_indices(indices, n, num_rows, name, scratch);
  if (n == 0) return g;
  require_int_size(n);
  cudaStream_t s = scratch.stream();
  I* keys = scratch.get<I>(n);
  I* rows = scratch.get<I>(n);
  std::int64_t* order = scratch.get<std::int64_t>(n);
  std::int64_t* positions = scratch.get<std::int64_t>(n);
  std::int64_t* counts = scratch.get<std::int64_t>(n);
  std::int64_t* starts = scratch.get<std::int64_t>(n);
  std::int64_t* num_groups = scratch.get<std::int64_t>(1);
  iota<<<blocks_for(n, block_threads), block_threads, 0, s>>>(order, n);
  check(cudaGetLastError(), "a kernel launch");
  // Only the bits an index in [0, num_rows) can have: fewer radix passes.
  int end_bit = 1;
  while (end_bit < int(8 * sizeof(I)) - 1 && (num_rows < 0 || (std::int64_t(1) << end_bit) < num_rows)) ++end_bit;
  const int count = int(n);
  std::size_t bytes = 0;
  check(cub::DeviceRadixSort::SortPairs(nullptr, bytes, indices, keys, order, positions, count, 0, end_bit, s),
        "cub::DeviceRadixSort::SortPairs");
  void* temp = scratch.get<unsigned char>(std::int64_t(bytes));
  check(cub::DeviceRadixSort::SortPairs(temp, bytes, indices, keys, order, positions, count, 0, end_bit, s),
        "cub::DeviceRadixSort::SortPairs");
  check(cudaMemsetAsync(counts, 0, sizeof(std::int64_t) * std::size_t(n), s), "cudaMemsetAsync");
  bytes = 0;
  check(cub::DeviceRunLengthEncode::Encode(nullptr, bytes, keys, rows, counts, num_groups, count, s),
        "cub::DeviceRunLengthEncode::Encode");
  temp = scratch.get<unsigned char>(std::int64_t(bytes));
  check(cub::DeviceRunLengthEncode::Encode(temp, bytes, keys, rows, counts, num_groups, count, s),
        "cub::DeviceRunLengthEncode::Encode");
  bytes = 0;
  check(cub::DeviceScan::ExclusiveSum(nullptr, bytes, counts, starts, count, s), "cub::DeviceScan::ExclusiveSum");
  temp = scratch.get<unsigned char>(std::int64_t(bytes));
  check(cub::DeviceScan::ExclusiveSum(temp, bytes, counts, starts, count, s), "cub::DeviceScan::ExclusiveSum");
  g.rows = rows;
  g.positions = positions;
  g.starts = starts;
  g.counts = counts;
  g.num_groups = num_groups;
  g.capacity = n;
  return g;
}

// The number of groups on the host (waits for the stream): for calls whose output size it is.
template <class I>
std::int64_t count_groups(const Groups<I>& g, Scratch& scratch) {
  std::int64_t count = 0;
  if (g.capacity == 0) return 0;
  check(cudaMemcpyAsync(&count, g.num_groups, sizeof count, cudaMemcpyDeviceToHost, scratch.stream()),
        "cudaMemcpyAsync");
  check(cudaStreamSynchronize(scratch.stream()), "cudaStreamSynchronize");
  return count;
}

// The host-side checks every step shares (those of the CPU's plan_step that need no device
// reads), then the indices checked and grouped on the device.
template <class T, class I>
Groups<I> prepare(const Table<T>& param, const RowSparse<T, I>& grad, const sparseopt::detail::WrittenArrays& written,
                  Scratch& scratch) {
  using sparseopt::detail::require;
  require(grad.row_width == param.row_width, "values must have rows of ", param.row_width,
          " elements (the parameter's row shape), got ", grad.row_width);
  require(grad.size >= 0, "the gradient size must be >= 0, got ", grad.size);
  require(param.data != nullptr || param.num_rows * param.row_width == 0, "param is null");
  require(grad.size == 0 || (grad.indices != nullptr && grad.values != nullptr), "indices or values is null");
  written.require_apart_from(grad.values, grad.size * grad.row_width * std::int64_t(sizeof(T)), "values");
  written.require_apart_from(grad.indices, grad.size * std::int64_t(sizeof(I)), "indices");
  return group_indices(grad.indices, grad.size, param.num_rows, "indices", scratch);
}

// A warp per group: enough warps for every index (the number of groups is a device value).
template <class Kernel, class... Args>
void launch_rows(std::int64_t capacity, cudaStream_t stream, Kernel kernel, Args... args) {
  if (capacity == 0) return;
  kernel<<<blocks_for(capacity, warps_per_block), block_threads, 0, stream>>>(args...);
  check(cudaGetLastError(), "a kernel launch");
}

}  // namespace detail
}  // namespace cuda
}  // namespace sparseopt
