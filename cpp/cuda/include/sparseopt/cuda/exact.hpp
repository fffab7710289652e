// Exact mode on the device (Adam and AdamW, SGD, RMSprop): the dense optimizer's result, rows
// untouched by a step caught up when next touched or flushed, as if they had seen zero
// gradients (see <sparseopt/optim/exact.hpp> for the CPU's record). Included by sparseopt_cuda.hpp.
//
// Where the arrays live:
//   device  param, the moments, and state.exact.last_step (one int64 per row);
//           record.columns: the mirror of the record's first 2 + aux columns (lr_t, L_t, and
//           Adam's c_t, q_t), device_record_columns (4) per step, record.capacity rows; zeros
//           to start with, as the host record.
//   host    state.exact.history, state.exact.ring and *state.exact.first_step (the bounded
//           record is required): maintained by the CPU's own code (ExactBook), exactly as the
//           CPU step does; each step uploads the row it recorded (and row 0 after a restart)
//           into the mirror on `stream`.
//
// The catch-up on the device takes the zero-gradient recurrence over the skipped steps s+1 .. e
// in double. Adam: per element, as the CPU's adam_catch_up_steps, truncated at the record's
// window H where its terms fade below 1e-18, AdamW's decay folded in. SGD and RMSprop with
// momentum: the drift sum_i lr_{s+i} mu^i (up to H terms, summed by the lanes of a warp) and
// the fade mu^k; SGD with momentum and weight decay: the product of the skipped steps' 2x2
// matrices (sgd_step_matrix; all k <= exact_record_span steps); SGD without momentum: the decay
// exp(L_e - L_s). The CPU uses window sums, series and stored products instead, so the two
// agree to rounding (1e-6 relative in float32), not bit for bit. The touched row's update is
// the CPU's formula (formulas.hpp).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include <sparseopt/optim/adam.hpp>
#include <sparseopt/optim/rmsprop.hpp>
#include <sparseopt/optim/sgd.hpp>
#include <sparseopt/view.hpp>

namespace sparseopt {
namespace cuda {

// The device mirror of an exact-mode record's per-step scalars: capacity x
// device_record_columns float64 in device memory, row i for step *first_step + i (as the host
// record; columns past 2 + layout.aux unused).
struct DeviceRecord {
  double* columns = nullptr;
  std::int64_t capacity = 0;
};

inline constexpr int device_record_columns = 4;

// Rows a device record needs: the bounded record's most steps, plus its first.
inline constexpr std::int64_t device_record_rows = exact_record_span + 1;

// One exact-mode Adam/AdamW step (options.mode == Mode::exact, bias_correction global or
// none): the touched rows caught up to step - 1, then the dense update. `step` is the step
// after the last one recorded. Validates everything (options, shapes, the record's room,
// indices on the device) before it writes, host or device.
template <class T, class I>
void adam_exact_step(const Table<T>& param, const RowSparse<T, I>& grad, const AdamState<T>& state,
                     const AdamOptions& options, std::int64_t step, const DeviceRecord& record,
                     cudaStream_t stream = nullptr);

// Brings every row (indices null) or the rows in indices[0, n) (device memory; repeats fine)
// up to `step`, the last step taken.
template <class T, class I>
void adam_exact_flush(const Table<T>& param, const AdamState<T>& state, const AdamOptions& options,
                      std::int64_t step, const DeviceRecord& record, const I* indices = nullptr,
                      std::int64_t n = 0, cudaStream_t stream = nullptr);

// The same for SGD (momentum, Nesterov, dampening, weight decay) and RMSprop (centered,
// momentum).
template <class T, class I>
void sgd_exact_step(const Table<T>& param, const RowSparse<T, I>& grad, const SgdState<T>& state,
                    const SgdOptions& options, std::int64_t step, const DeviceRecord& record,
                    cudaStream_t stream = nullptr);
template <class T, class I>
void sgd_exact_flush(const Table<T>& param, const SgdState<T>& state, const SgdOptions& options,
                     std::int64_t step, const DeviceRecord& record, const I* indices = nullptr,
                     std::int64_t n = 0, cudaStream_t stream = nullptr);
template <class T, class I>
void rmsprop_exact_step(const Table<T>& param, const RowSparse<T, I>& grad, const RmspropState<T>& state,
                        const RmspropOptions& options, std::int64_t step, const DeviceRecord& record,
                        cudaStream_t stream = nullptr);
template <class T, class I>
void rmsprop_exact_flush(const Table<T>& param, const RmspropState<T>& state, const RmspropOptions& options,
                         std::int64_t step, const DeviceRecord& record, const I* indices = nullptr,
                         std::int64_t n = 0, cudaStream_t stream = nullptr);

}  // namespace cuda
}  // namespace sparseopt
