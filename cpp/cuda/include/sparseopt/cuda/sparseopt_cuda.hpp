// sparseopt's optional CUDA kernels (target sparseopt::cuda, built with SPARSEOPT_CUDA=ON): the
// lazy steps of every optimizer, gather_sum and its backward pass, and top-k along rows, on
// arrays in device memory.
//
// The same views and options as the CPU core (Table, RowSparse, Bags, *State, *Options), whose
// pointers are device pointers here, and the same per-element formulas (optim/formulas.hpp),
// so a step on the device computes the CPU's bits from the same inputs (a float sum in the
// same order, no contraction into FMAs; pow, in FTRL with lr_power != -0.5 and in
// bias_correction='row', may differ in its last bit).
//
//   sparseopt::cuda::adam_step<float, std::int64_t>(param, grad, state, options, step, stream);
//
// Every call validates before it writes: the shapes and options on the host, the indices on
// the device (one small copy back and a wait for `stream`, so a call returns after its checks;
// the update itself is queued on `stream` and may still run when the call returns). Arrays
// are the caller's; temporary memory comes from cudaMallocAsync on `stream`.
//
// Repeated indices are summed in the order they appear (a stable radix sort of (index,
// position) pairs, then one thread per element of a row adds its values in that order), so the
// bits are the same on every run. One warp updates one row.
//
// Exact mode (Mode::exact) has its own calls, {adam,sgd,rmsprop}_exact_step and _exact_flush
// (<sparseopt/cuda/exact.hpp>, included here: last_step on the device, the record in host
// memory with a device mirror of its per-step scalars); the steps below throw
// sparseopt::cuda::not_implemented for it.
#pragma once

#include <cstdint>
#include <stdexcept>

#include <cuda_runtime_api.h>

#include <sparseopt/gather.hpp>
#include <sparseopt/optim/adagrad.hpp>
#include <sparseopt/optim/adam.hpp>
#include <sparseopt/optim/ftrl.hpp>
#include <sparseopt/optim/rmsprop.hpp>
#include <sparseopt/optim/rowwise_adagrad.hpp>
#include <sparseopt/optim/sgd.hpp>
#include <sparseopt/topk.hpp>
#include <sparseopt/view.hpp>

namespace sparseopt {
namespace cuda {

// An option the device kernels do not implement (exact mode).
struct not_implemented : std::logic_error {
  using std::logic_error::logic_error;
};

// A CUDA runtime call failed (no device, out of memory, a kernel fault).
struct cuda_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The number of CUDA devices this process sees; 0 when there is no driver or no device (never
// throws).
int device_count() noexcept;

// Lazy steps (untouched rows keep parameters and state). `step` counts this step, as on the
// CPU. T: float or double; I: std::int32_t or std::int64_t.
template <class T, class I>
void sgd_step(const Table<T>& param, const RowSparse<T, I>& grad, const SgdState<T>& state,
              const SgdOptions& options, std::int64_t step, cudaStream_t stream = nullptr);
template <class T, class I>
void adam_step(const Table<T>& param, const RowSparse<T, I>& grad, const AdamState<T>& state,
               const AdamOptions& options, std::int64_t step, cudaStream_t stream = nullptr);
template <class T, class I>
void adagrad_step(const Table<T>& param, const RowSparse<T, I>& grad, const AdagradState<T>& state,
                  const AdagradOptions& options, std::int64_t step, cudaStream_t stream = nullptr);
template <class T, class I>
void rmsprop_step(const Table<T>& param, const RowSparse<T, I>& grad, const RmspropState<T>& state,
                  const RmspropOptions& options, std::int64_t step, cudaStream_t stream = nullptr);
template <class T, class I>
void rowwise_adagrad_step(const Table<T>& param, const RowSparse<T, I>& grad,
                          const RowWiseAdagradState<T>& state, const RowWiseAdagradOptions& options,
                          cudaStream_t stream = nullptr);
template <class T, class I>
void ftrl_step(const Table<T>& param, const RowSparse<T, I>& grad, const FtrlState<T>& state,
               const FtrlOptions& options, cudaStream_t stream = nullptr);

// The coalesced gradient (coalesce.hpp): unique_out[0:u] ascending, values_out[0:u * width]
// each row's values summed in the order they appear, counts_out[0:u] how often each index
// appeared; u returned (it waits for `stream`). num_rows < 0: indices need only be >= 0.
// capacity >= min(n, num_rows) always suffices.
template <class T, class I>
std::int64_t coalesce(const RowSparse<T, I>& grad, std::int64_t num_rows, I* unique_out, T* values_out,
                      std::int64_t* counts_out, std::int64_t capacity, cudaStream_t stream = nullptr);

// out[b] = the (weighted) sum, or the mean, of table rows indices[indptr[b] : indptr[b + 1]]
// (gather.hpp); a warp per bag, terms added in order, as on the CPU.
template <class T, class I>
void gather_sum(Table<const T> table, const Bags<T, I>& bags, Table<T> out,
                BagReduction mode = BagReduction::sum, cudaStream_t stream = nullptr);

// The table's gradient from grad_out (num_bags rows): rows_out[0:u] ascending and unique,
// values_out[0:u * width], u returned (it waits for `stream`). capacity >= min(n, num_rows)
// always suffices.
template <class T, class I>
std::int64_t gather_sum_backward(Table<const T> grad_out, const Bags<T, I>& bags, std::int64_t num_rows,
                                 I* rows_out, T* values_out, std::int64_t capacity,
                                 BagReduction mode = BagReduction::sum, cudaStream_t stream = nullptr);

// The k best elements of each of `rows` rows of n (x: rows x n, C order) into values and
// indices (rows x k), best first with the CPU's ranking (topk.hpp): the CPU's sorted output,
// bit for bit. options.sorted is ignored: the output is always sorted.
template <class T>
void topk_rows(const T* x, std::int64_t rows, std::int64_t n, std::int64_t k, T* values, std::int64_t* indices,
               const TopkOptions& options = {}, cudaStream_t stream = nullptr);

}  // namespace cuda
}  // namespace sparseopt

#include <sparseopt/cuda/exact.hpp>
