// gather_sum and gather_sum_backward on the device (gather.hpp has the definitions): a warp
// per output row, each lane adding its elements' terms in the CPU's order (the first term,
// then each next one added), so the same bits.
#include <cstdint>
#include <utility>
#include <vector>

#include "groups.cuh"

namespace sparseopt {
namespace cuda {
namespace {

using detail::Scratch;
using sparseopt::detail::require;

// The CSR structure, checked on a host copy of indptr (num_bags + 1 offsets), and the indices
// on the device: the CPU's checks and messages (gather.hpp's check_bags).
template <class T, class I>
void check_bags(const Bags<T, I>& bags, std::int64_t num_rows, BagReduction mode, Scratch& scratch) {
  require(bags.num_bags >= 0, "the number of bags must be >= 0, got ", bags.num_bags);
  require(bags.size >= 0, "the number of indices must be >= 0, got ", bags.size);
  require(bags.indptr != nullptr, "indptr is null; it needs num_bags + 1 entries");
  require(bags.indices != nullptr || bags.size == 0, "indices is null");
  require(mode == BagReduction::sum || bags.weights == nullptr,
          "weights are only supported with mode=\"sum\" (as torch.nn.functional.embedding_bag's "
          "per_sample_weights); for a mean, pass weights / bag length with mode=\"sum\"");
  std::vector<I> indptr(std::size_t(bags.num_bags + 1));
  detail::check(cudaMemcpyAsync(indptr.data(), bags.indptr, sizeof(I) * indptr.size(), cudaMemcpyDeviceToHost,
                                scratch.stream()),
                "cudaMemcpyAsync");
  detail::check(cudaStreamSynchronize(scratch.stream()), "cudaStreamSynchronize");
  require(indptr[0] == 0, "indptr[0] must be 0, got ", std::int64_t(indptr[0]));
  for (std::int64_t b = 0; b < bags.num_bags; ++b)
    require(indptr[b] <= indptr[b + 1], "indptr must be non-decreasing, got indptr[", b, "] = ",
            std::int64_t(indptr[b]), " > indptr[", b + 1, "] = ", std::int64_t(indptr[b + 1]));
  require(std::int64_t(indptr[bags.num_bags]) == bags.size, "indptr[-1] = ", std::int64_t(indptr[bags.num_bags]),
          " must equal len(indices) = ", bags.size, "; indptr holds num_bags + 1 offsets, the last one len(indices)");
  detail::check_indices(bags.indices, bags.size, num_rows, "indices", scratch);
}

template <bool Mean, class T, class I>
__global__ void gather_sum_kernel(const T* table, const I* indptr, const I* indices, const T* weights,
                                  std::int64_t num_bags, std::int64_t w, T* out) {
  const std::int64_t b = warp_index();
  if (b >= num_bags) return;
  const std::int64_t begin = indptr[b], end = indptr[b + 1];
  T* o = out + b * w;
  for (std::int64_t j = lane_index(); j < w; j += warp_size) {
    if (begin == end) {
      o[j] = T(0);
      continue;
    }
    auto term = [&](std::int64_t p) {
      const T x = table[std::int64_t(indices[p]) * w + j];
      return weights ? weights[p] * x : x;
    };
    T acc = term(begin);
    for (std::int64_t p = begin + 1; p < end; ++p) acc += term(p);
    if constexpr (Mean) acc /= T(end - begin);
    o[j] = acc;
  }
}

template <class I>
__global__ void bag_of_positions(const I* indptr, std::int64_t num_bags, std::int64_t* bag_of) {
  const std::int64_t b = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= num_bags) return;
  for (std::int64_t p = indptr[b], end = indptr[b + 1]; p < end; ++p) bag_of[p] = b;
}

// Row u of the table's gradient: the terms of its positions in order of appearance, term p =
// weights[p] * grad_out[bag of p] (mode mean: grad_out[bag of p] / len(bag of p)).
template <bool Mean, class T, class I>
__global__ void gather_backward_kernel(Groups<I> g, const T* grad_out, const I* indptr, const std::int64_t* bag_of,
                                       const T* weights, std::int64_t w, I* rows_out, T* values_out) {
  const std::int64_t u = warp_index();
  if (u >= *g.num_groups) return;
  if (lane_index() == 0) rows_out[u] = g.rows[u];
  const std::int64_t* pos = g.positions + g.starts[u];
  const std::int64_t count = g.counts[u];
  for (std::int64_t j = lane_index(); j < w; j += warp_size) {
    auto term = [&](std::int64_t p) {
      const std::int64_t b = bag_of[p];
      T x = grad_out[b * w + j];
      if constexpr (Mean) x = x / T(std::int64_t(indptr[b + 1]) - std::int64_t(indptr[b]));
      return weights ? weights[p] * x : x;
    };
    T acc = term(pos[0]);
    for (std::int64_t k = 1; k < count; ++k) acc += term(pos[k]);
    values_out[u * w + j] = acc;
  }
}

}  // namespace

template <class T, class I>
void gather_sum(Table<const T> table, const Bags<T, I>& bags, Table<T> out, BagReduction mode, cudaStream_t stream) {
  Scratch scratch(stream);
  require(out.num_rows == bags.num_bags && out.row_width == table.row_width, "out must have shape (",
          bags.num_bags, ", ", table.row_width, "), got (", out.num_rows, ", ", out.row_width, ")");
  require(table.data != nullptr || table.num_rows * table.row_width == 0, "table is null");
  // Pointer ranges only (no device reads), as the CPU checks: an out that overlaps an input would
  // be read by one warp while another writes it.
  using sparseopt::detail::byte_size;
  using sparseopt::detail::require_disjoint;
  const std::int64_t out_bytes = byte_size(out), nb_bytes = (bags.num_bags + 1) * std::int64_t(sizeof(I));
  require_disjoint(out.data, out_bytes, "out", table.data, byte_size(table), "table");
  require_disjoint(out.data, out_bytes, "out", bags.weights, bags.size * std::int64_t(sizeof(T)), "weights");
  require_disjoint(out.data, out_bytes, "out", bags.indices, bags.size * std::int64_t(sizeof(I)), "indices");
  require_disjoint(out.data, out_bytes, "out", bags.indptr, nb_bytes, "indptr");
  check_bags(bags, table.num_rows, mode, scratch);
  const std::int64_t nb = bags.num_bags, w = table.row_width;
  if (nb == 0 || w == 0) return;
  auto kernel = mode == BagReduction::mean ? gather_sum_kernel<true, T, I> : gather_sum_kernel<false, T, I>;
  kernel<<<detail::blocks_for(nb, detail::warps_per_block), detail::block_threads, 0, stream>>>(
      table.data, bags.indptr, bags.indices, bags.weights, nb, w, out.data);
  detail::check(cudaGetLastError(), "a kernel launch");
}

template <class T, class I>
std::int64_t gather_sum_backward(Table<const T> grad_out, const Bags<T, I>& bags, std::int64_t num_rows,
                                 I* rows_out, T* values_out, std::int64_t capacity, BagReduction mode,
                                 cudaStream_t stream) {
  Scratch scratch(stream);
  require(grad_out.num_rows == bags.num_bags, "grad_out must have ", bags.num_bags, " rows (one per bag), got ",
          grad_out.num_rows);
  require(num_rows >= 0, "num_rows must be >= 0, got ", num_rows);
  {  // the outputs apart from every input and from each other (pointer ranges, as the CPU checks)
    using sparseopt::detail::require_disjoint;
    const std::int64_t rows_bytes = capacity * std::int64_t(sizeof(I));
    const std::int64_t values_bytes = capacity * grad_out.row_width * std::int64_t(sizeof(T));
    const std::pair<const void*, std::int64_t> inputs[] = {
        {grad_out.data, sparseopt::detail::byte_size(grad_out)},
        {bags.weights, bags.size * std::int64_t(sizeof(T))},
        {bags.indices, bags.size * std::int64_t(sizeof(I))},
        {bags.indptr, (bags.num_bags + 1) * std::int64_t(sizeof(I))}};
    const char* names[] = {"grad_out", "weights", "indices", "indptr"};
    for (int k = 0; k < 4; ++k) {
      require_disjoint(rows_out, rows_bytes, "rows", inputs[k].first, inputs[k].second, names[k]);
      require_disjoint(values_out, values_bytes, "values", inputs[k].first, inputs[k].second, names[k]);
    }
    require_disjoint(rows_out, rows_bytes, "rows", values_out, values_bytes, "values");
  }
  check_bags(bags, num_rows, mode, scratch);
  const Groups<I> g = detail::group_indices(bags.indices, bags.size, num_rows, "indices", scratch);
  const std::int64_t unique = detail::count_groups(g, scratch);
  require(capacity >= unique, "the output holds ", capacity, " rows but the bags touch ", unique,
          "; pass capacity >= min(number of indices, num_rows)");
  if (unique == 0) return 0;
  require(rows_out != nullptr && (values_out != nullptr || grad_out.row_width == 0), "rows_out or values_out is null");
  std::int64_t* bag_of = scratch.get<std::int64_t>(bags.size);
  bag_of_positions<<<detail::blocks_for(bags.num_bags, detail::block_threads), detail::block_threads, 0, stream>>>(
      bags.indptr, bags.num_bags, bag_of);
  detail::check(cudaGetLastError(), "a kernel launch");
  auto kernel = mode == BagReduction::mean ? gather_backward_kernel<true, T, I> : gather_backward_kernel<false, T, I>;
  kernel<<<detail::blocks_for(g.capacity, detail::warps_per_block), detail::block_threads, 0, stream>>>(
      g, grad_out.data, bags.indptr, bag_of, bags.weights, grad_out.row_width, rows_out, values_out);
  detail::check(cudaGetLastError(), "a kernel launch");
  return unique;
}

#define SPARSEOPT_CUDA_GATHER(T, I)                                                                             \
  template void gather_sum<T, I>(Table<const T>, const Bags<T, I>&, Table<T>, BagReduction, cudaStream_t);     \
  template std::int64_t gather_sum_backward<T, I>(Table<const T>, const Bags<T, I>&, std::int64_t, I*, T*,     \
                                                  std::int64_t, BagReduction, cudaStream_t);

SPARSEOPT_CUDA_GATHER(float, std::int32_t)
SPARSEOPT_CUDA_GATHER(float, std::int64_t)
SPARSEOPT_CUDA_GATHER(double, std::int32_t)
SPARSEOPT_CUDA_GATHER(double, std::int64_t)

}  // namespace cuda
}  // namespace sparseopt
