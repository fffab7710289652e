// meProp: sparsified backpropagation through a linear layer (Sun et al., ICML 2017).
//
// For y = x W^T + b with x (batch x in), W (out x in) and the output gradient G (batch x out),
// meProp keeps, per example, only the k entries of G[b] with the largest magnitude and
// back-propagates those:
//
//     mask      = the top-k |G[b, :]| of each example b       (per example, the default), or
//               = the top-k of sum_b |G[b, :]|, for every b    (unified: one set per batch)
//     g         = G * mask
//     grad_x    = g W                   (batch x in)
//     grad_W    = g^T x                 (only the rows of units selected for some example)
//     grad_bias = sum_b G[b, :]         (unmasked, as in the reference code: the bias sits
//                                        outside the sparsified product)
//
// The selected entries form bags in CSR form (example b's bag: its k units, weighted by their
// gradients), so the products are gather.hpp's: grad_x = gather_sum(W, bags) and
// grad_W = gather_sum_backward(x, bags), coalesced over units, ready for an optimizer step.
// Top-k is topk.hpp's (ties: the lower unit; NaN ranks above every number, so a NaN gradient
// is always kept and reaches grad_x and grad_W).
//
// Every sum runs in a fixed order (by example, then by the order top-k returns units), so the
// bits do not depend on the thread count.
//
// From C++:
//
//   sparseopt::MePropPlan<float> plan;                       // keep it: buffers are reused
//   plan.build(grad_out, batch, out, in, k, /*unified=*/false);  // selects the units
//   std::vector<std::int64_t> rows(plan.size());
//   std::vector<float> values(plan.size() * in), grad_x(batch * in), grad_bias(out);
//   sparseopt::meprop_linear_backward<float>({x, batch, in}, {W, out, in}, {grad_out, batch, out},
//       plan, grad_x.data(), rows.data(), {values.data(), plan.size(), in}, grad_bias.data());
#pragma once

#include <sparseopt/config.hpp>
#include <sparseopt/errors.hpp>
#include <sparseopt/gather.hpp>
#include <sparseopt/parallel.hpp>
#include <sparseopt/simd.hpp>
#include <sparseopt/topk.hpp>
#include <sparseopt/view.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace sparseopt {

namespace detail {

// sums[u] = the sum over b of x[b, u] (Abs: |x[b, u]|) for x of batch rows of `cols`: 0, then
// each example added in order. Computed row by row over a range of columns (contiguous reads,
// vectorised), each column with the same additions in the same order as a column at a time.
template <bool Abs, class T>
void column_sums(const T* x, std::int64_t batch, std::int64_t cols, T* sums, int threads) {
  constexpr std::int64_t span = 512;  // columns per item: a few KB of sums stay in L1
  const std::int64_t items = (cols + span - 1) / span;
  parallel_for(items, threads, batch * cols, [&](std::int64_t item, int) {
    const std::int64_t lo = item * span, hi = std::min(cols, lo + span);
    T* SPARSEOPT_RESTRICT s = sums + lo;
    for (std::int64_t u = 0; u < hi - lo; ++u) s[u] = T(0);
    simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {
      for (std::int64_t b = 0; b < batch; ++b) {
        const T* SPARSEOPT_RESTRICT row = x + b * cols + lo;
        if constexpr (Abs) {
          for (std::int64_t u = 0; u < hi - lo; ++u) s[u] += std::abs(row[u]);
        } else {
          for (std::int64_t u = 0; u < hi - lo; ++u) s[u] += row[u];
        }
      }
    });
  });
}

}  // namespace detail

// The units meProp keeps for one batch, as bags over W's rows, and the gather plan of the
// weight gradient. Build it from grad_out, then call meprop_linear_backward with the same
// grad_out. Rebuilding reuses the buffers.
template <class T>
class MePropPlan {
 public:
  // Selects the top-k units of grad_out (batch x out, packed rows) per example, or one shared
  // set with `unified`; `in` (the layer's input width, x's row width) sizes the weight
  // gradient's cache blocks. Throws sparseopt::invalid_argument before changing anything
  // unless 1 <= k <= out and the sizes are non-negative.
  void build(const T* grad_out, std::int64_t batch, std::int64_t out, std::int64_t in, std::int64_t k,
             bool unified, int num_threads = 0) {
    detail::require(batch >= 0 && out >= 0 && in >= 0, "grad_out must have a non-negative shape, got (",
                    batch, ", ", out, "), in = ", in);
    detail::require(k >= 1 && k <= out, "k must be in [1, out] = [1, ", out, "], got ", k);
    detail::require(grad_out != nullptr || batch * out == 0, "grad_out is null");
    const int threads = detail::resolve_threads(num_threads);
    batch_ = out_ = k_ = -1;
    const auto n = static_cast<std::size_t>(batch * k);
    detail::fit(units_, n);
    detail::fit(weights_, n);
    units_.resize(n);
    weights_.resize(n);
    indptr_.resize(static_cast<std::size_t>(batch + 1));
    for (std::int64_t b = 0; b <= batch; ++b) indptr_[b] = b * k;
    TopkOptions options;
    options.magnitude = true;
    options.sorted = false;  // any fixed order will do; heap order is the cheapest
    if (!unified) {
      if (batch > 0)
        topk_rows(grad_out, batch, out, k, weights_.data(), units_.data(), options, threads);
    } else {
      // One set for the batch: the top-k of the column sums of |grad_out|, summed by example
      // in order.
      column_sums_.resize(static_cast<std::size_t>(out));
      detail::column_sums<true>(grad_out, batch, out, column_sums_.data(), threads);
      shared_units_.resize(static_cast<std::size_t>(k));
      std::vector<T> top(static_cast<std::size_t>(k));
      options.sorted = true;  // ascending units below keep W's rows in memory order
      topk_row(column_sums_.data(), out, k, top.data(), shared_units_.data(), options);
      std::sort(shared_units_.begin(), shared_units_.end());
      for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t j = 0; j < k; ++j) {
          const std::int64_t u = shared_units_[static_cast<std::size_t>(j)];
          units_[static_cast<std::size_t>(b * k + j)] = u;
          weights_[static_cast<std::size_t>(b * k + j)] = grad_out[b * out + u];
        }
    }
    gather_.build(bags_of(batch, k), out, in, BagReduction::sum, {}, num_threads);
    batch_ = batch;
    out_ = out;
    k_ = k;
  }

  // Rows of the weight gradient: the units selected for at least one example.
  std::int64_t size() const noexcept { return gather_.size(); }
  // Those units, ascending.
  const std::vector<std::int64_t>& rows() const noexcept { return gather_.rows(); }
  // The selection as bags: example b's units units()[b*k : (b+1)*k] with their gradients.
  Bags<T, std::int64_t> bags() const noexcept { return bags_of(batch_, k_); }
  const GatherPlan<std::int64_t>& gather_plan() const noexcept { return gather_; }
  std::int64_t batch() const noexcept { return batch_; }
  std::int64_t out() const noexcept { return out_; }
  std::int64_t k() const noexcept { return k_; }

 private:
  Bags<T, std::int64_t> bags_of(std::int64_t batch, std::int64_t k) const noexcept {
    return Bags<T, std::int64_t>{indptr_.data(), units_.data(), weights_.data(), batch,
                                 batch < 0 ? 0 : batch * k};
  }

  std::vector<std::int64_t> indptr_, units_, shared_units_;
  std::vector<T> weights_, column_sums_;
  GatherPlan<std::int64_t> gather_;
  std::int64_t batch_ = -1, out_ = -1, k_ = -1;
};

// The meProp backward of y = x W^T + b (see the top of this header), with `plan` built from
// this grad_out. Writes grad_x (batch x in; null to skip it), rows_out (plan.size() units,
// ascending; null to skip), values_out (plan.size() x in: the weight gradient's rows) and
// grad_bias (out; null to skip). Outputs must not overlap the inputs or each other. Checks
// every shape before writing anything (sparseopt::invalid_argument).
template <class T>
void meprop_linear_backward(Table<const T> x, Table<const T> weight, Table<const T> grad_out,
                            const MePropPlan<T>& plan, T* grad_x, std::int64_t* rows_out,
                            Table<T> values_out, T* grad_bias, int num_threads = 0) {
  const int threads = detail::resolve_threads(num_threads);
  const std::int64_t batch = x.num_rows, in = x.row_width, out = weight.num_rows;
  detail::require(weight.row_width == in, "weight must have shape (out, in) with in = x.shape[1] = ", in,
                  ", got (", out, ", ", weight.row_width, ")");
  detail::require(grad_out.num_rows == batch && grad_out.row_width == out,
                  "grad_out must have shape (batch, out) = (", batch, ", ", out, "), got (",
                  grad_out.num_rows, ", ", grad_out.row_width, ")");
  detail::require(plan.batch() == batch && plan.out() == out,
                  "the plan was built for another grad_out (", plan.batch(), " x ", plan.out(),
                  "); build it from this grad_out first");
  detail::require(values_out.num_rows == plan.size() && values_out.row_width == in,
                  "values must have shape (", plan.size(), ", ", in, "), got (", values_out.num_rows, ", ",
                  values_out.row_width, ")");
  const std::int64_t gx_bytes = batch * in * std::int64_t(sizeof(T));
  const std::int64_t gb_bytes = out * std::int64_t(sizeof(T));
  if (grad_x) {
    detail::require_disjoint(grad_x, gx_bytes, "grad_x", x.data, gx_bytes, "x");
    detail::require_disjoint(grad_x, gx_bytes, "grad_x", weight.data, out * in * std::int64_t(sizeof(T)),
                             "weight");
    detail::require_disjoint(grad_x, gx_bytes, "grad_x", grad_out.data, batch * out * std::int64_t(sizeof(T)),
                             "grad_out");
    detail::require_disjoint(grad_x, gx_bytes, "grad_x", values_out.data, detail::byte_size(values_out),
                             "values");
  }
  if (grad_bias) {
    detail::require_disjoint(grad_bias, gb_bytes, "grad_bias", grad_out.data,
                             batch * out * std::int64_t(sizeof(T)), "grad_out");
    detail::require_disjoint(grad_bias, gb_bytes, "grad_bias", values_out.data, detail::byte_size(values_out),
                             "values");
    if (grad_x) detail::require_disjoint(grad_bias, gb_bytes, "grad_bias", grad_x, gx_bytes, "grad_x");
  }
  const Bags<T, std::int64_t> bags = plan.bags();
  // Checks of the two products run before either writes.
  detail::require_disjoint(values_out.data, detail::byte_size(values_out), "values", x.data, gx_bytes, "x");

  if (grad_x) gather_sum(weight, bags, Table<T>{grad_x, batch, in}, BagReduction::sum, threads);
  gather_sum_backward(x, bags, plan.gather_plan(), rows_out, values_out, BagReduction::sum, threads);
  if (grad_bias) detail::column_sums<false>(grad_out.data, batch, out, grad_bias, threads);
}

}  // namespace sparseopt
