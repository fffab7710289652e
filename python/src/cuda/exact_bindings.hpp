// sparseopt._cuda: exact mode of Adam/AdamW, SGD and RMSprop on a device table
// (sparseopt/cuda/exact.hpp).
// Included by module.cpp inside its anonymous namespace (it uses DeviceArray, step_arrays and
// run_step there). The record's arrays are host NumPy arrays (history, window, history_start),
// last_step and the record's mirror are device arrays; all checked before anything runs.
#pragma once

// <pybind11/numpy.h>: included at the top of module.cpp.

// A writeable C-contiguous host NumPy array of dtype U and the given shape (-1: any extent).
template <class U>
U* host_array(py::handle obj, const char* name, std::vector<std::int64_t> shape) {
  require(py::isinstance<py::array>(obj), name, " must be a NumPy array in host memory (exact mode's record stays "
          "on the host), got ", std::string(py::str(py::type::of(obj))));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  require(py::isinstance<py::array_t<U>>(a) && a.dtype().is(py::dtype::of<U>()), name, " must have dtype ",
          std::string(py::str(py::dtype::of<U>())), ", got ", std::string(py::str(a.dtype())));
  require(a.writeable() && (a.flags() & py::array::c_style), name, " must be writeable and C-contiguous");
  bool same = a.ndim() == py::ssize_t(shape.size());
  for (std::size_t i = 0; same && i < shape.size(); ++i) same = shape[i] < 0 || a.shape(i) == shape[i];
  require(same, name, " has the wrong shape for these options (", std::string(py::str(a.attr("shape"))),
          "); pass the optimizer's own array");
  return static_cast<U*>(a.mutable_data());
}

// Exact mode's arrays of a device table, checked: last_step and the mirror on the parameter's
// device, the record's host arrays shaped by the layout.
struct ExactArrays {
  sparseopt::ExactState state;
  sparseopt::cuda::DeviceRecord record;
};

void check_exact_device_arrays(const DeviceArray& param, const DeviceArray& last_step, const DeviceArray& mirror);

ExactArrays exact_arrays(const DeviceArray& param, py::handle last_step, py::handle device_record, py::handle history,
                         py::handle window, py::handle history_start, const sparseopt::ExactLayout& layout) {
  const DeviceArray last = device_array(last_step, "last_step", true);
  const DeviceArray mirror = device_array(device_record, "device_record", true);
  check_exact_device_arrays(param, last, mirror);
  ExactArrays e;
  e.state.last_step = static_cast<std::int64_t*>(last.data);
  e.state.history = host_array<double>(history, "history", {-1, layout.columns()});
  e.state.capacity = py::reinterpret_borrow<py::array>(history).shape(0);
  e.state.ring = host_array<double>(window, "window", {layout.window, layout.quantities});
  e.state.first_step = host_array<std::int64_t>(history_start, "history_start", {1});
  e.record.columns = static_cast<double*>(mirror.data);
  e.record.capacity = mirror.rows();
  return e;
}

void check_exact_device_arrays(const DeviceArray& param, const DeviceArray& last_step, const DeviceArray& mirror) {
  require(last_step.present && last_step.typestr == "<i8" && last_step.shape == std::vector<std::int64_t>{param.rows()},
          "last_step must be an int64 device array of shape (", param.rows(), ",)");
  // Every optimizer's mirror has device_record_columns columns (lr, L, and up to two scalars;
  // that the layout's scalars fit is exact.cu's check_record, run by every step and flush).
  require(mirror.present && mirror.typestr == "<f8" && mirror.shape.size() == 2 &&
              mirror.shape[1] == sparseopt::cuda::device_record_columns,
          "device_record must be a float64 device array of shape (rows, ", sparseopt::cuda::device_record_columns,
          ")");
  Call check(param);
  check.add(last_step);
  check.add(mirror);
}

// The state arrays of an exact step or flush (a tuple, in the lazy binding's order), checked as
// the parameter's dtype and shape.
std::vector<std::pair<py::handle, const char*>> named_state(py::tuple state, const std::vector<const char*>& names) {
  require(state.size() == names.size(), "expected ", names.size(), " state arrays, got ", state.size());
  std::vector<std::pair<py::handle, const char*>> out;
  for (std::size_t k = 0; k < names.size(); ++k) out.emplace_back(state[k], names[k]);
  return out;
}

// Binds <name>_exact_step and <name>_exact_flush of one optimizer: `names` its state arrays,
// layout(options) its record's layout, make_state(T{}, arrays) its state view, and
// step(T{}, I{}, param, grad, state, options, step, record, stream) /
// flush(T{}, I{}, param, state, options, step, record, indices, n, stream) the kernels.
template <class Options, class Layout, class MakeState, class Step, class Flush>
void bind_exact_optimizer(py::module_& m, const std::string& name, std::vector<const char*> names, Layout layout,
                          MakeState make_state, Step step_kernel, Flush flush_kernel) {
  using py::arg;
  m.def(
      (name + "_exact_step").c_str(),
      [=](py::handle param, py::handle indices, py::handle values, py::handle bags, py::tuple state_arrays,
          py::handle last_step, py::handle history, py::handle window, py::handle history_start,
          py::handle device_record, const Options& o, std::int64_t step, std::uintptr_t stream) {
        auto s = step_arrays(param, indices, values, bags, named_state(state_arrays, names));
        const ExactArrays e = exact_arrays(s.param, last_step, device_record, history, window, history_start, layout(o));
        run_step(s, [&](auto t, auto i) {
          using T = decltype(t);
          using I = decltype(i);
          auto state = make_state(t, s.state);
          state.exact = e.state;
          step_kernel(t, i, table<T>(s.param), gradient<T, I>(s), state, o, step, e.record, to_stream(stream));
        });
      },
      arg("param"), arg("indices"), arg("values"), arg("bags"), arg("state"), arg("last_step"), arg("history"),
      arg("window"), arg("history_start"), arg("device_record"), arg("options"), arg("step"), arg("stream") = 0);
  m.def(
      (name + "_exact_flush").c_str(),
      [=](py::handle param_obj, py::handle indices_obj, py::tuple state_arrays, py::handle last_step,
          py::handle history, py::handle window, py::handle history_start, py::handle device_record,
          const Options& o, std::int64_t step, std::uintptr_t stream) {
        const DeviceArray param = device_array(param_obj, "param", true);
        require(param.present && (param.typestr == "<f4" || param.typestr == "<f8") && !param.shape.empty(),
                "param must be a float32 or float64 device array with rows first");
        const DeviceArray indices = device_array(indices_obj, "indices", false);
        require(!indices.present || (indices.shape.size() == 1 && (indices.typestr == "<i4" || indices.typestr == "<i8")),
                "indices must be None or a 1-D int32 or int64 device array");
        std::vector<DeviceArray> arrays;
        for (const auto& [obj, array_name] : named_state(state_arrays, names)) {
          DeviceArray a = device_array(obj, array_name, true);
          require_dtype(a, param.typestr);
          require(!a.present || a.shape == param.shape, array_name, " must have the parameter's shape");
          arrays.push_back(a);
        }
        const ExactArrays e = exact_arrays(param, last_step, device_record, history, window, history_start, layout(o));
        Call call(param);
        call.add(indices);
        for (const auto& a : arrays) call.add(a);
        dispatch_types(param.typestr, indices.present ? indices.typestr : "<i8", [&](auto t, auto i) {
          using T = decltype(t);
          using I = decltype(i);
          auto state = make_state(t, arrays);
          state.exact = e.state;
          const I* rows = indices.present ? static_cast<const I*>(indices.data) : nullptr;
          const std::int64_t n = indices.present ? indices.shape[0] : 0;
          call.run([&] { flush_kernel(t, i, table<T>(param), state, o, step, e.record, rows, n, to_stream(stream)); });
        });
      },
      arg("param"), arg("indices"), arg("state"), arg("last_step"), arg("history"), arg("window"),
      arg("history_start"), arg("device_record"), arg("options"), arg("step"), arg("stream") = 0);
}

// The kernels of <name>_exact_step and <name>_exact_flush, for bind_exact_optimizer.
#define SPARSEOPT_EXACT_KERNELS(NAME)                                                                          \
  [](auto t, auto i, const auto& param, const auto& grad, const auto& state, const auto& o, std::int64_t step, \
     const auto& record, cudaStream_t stream) {                                                                \
    sparseopt::cuda::NAME##_exact_step<decltype(t), decltype(i)>(param, grad, state, o, step, record, stream); \
  },                                                                                                           \
      [](auto t, auto i, const auto& param, const auto& state, const auto& o, std::int64_t step,               \
         const auto& record, const auto* rows, std::int64_t n, cudaStream_t stream) {                          \
        sparseopt::cuda::NAME##_exact_flush<decltype(t), decltype(i)>(param, state, o, step, record, rows, n,   \
                                                                      stream);                                 \
      }

void bind_exact(py::module_& m) {
  m.def("device_record_rows", [] { return sparseopt::cuda::device_record_rows; },
        "The rows of exact mode's device record (the bounded record's most steps, plus one).");
  bind_exact_optimizer<sparseopt::AdamOptions>(
      m, "adam", {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
      [](const sparseopt::AdamOptions& o) { return sparseopt::adam_exact_layout(o); },
      [](auto t, const std::vector<DeviceArray>& a) {
        using T = decltype(t);
        sparseopt::AdamState<T> state;
        state.exp_avg = table<T>(a[0]);
        state.exp_avg_sq = table<T>(a[1]);
        state.max_exp_avg_sq = table<T>(a[2]);
        return state;
      },
      SPARSEOPT_EXACT_KERNELS(adam));
  bind_exact_optimizer<sparseopt::SgdOptions>(
      m, "sgd", {"momentum_buffer"}, [](const sparseopt::SgdOptions& o) { return sparseopt::sgd_exact_layout(o); },
      [](auto t, const std::vector<DeviceArray>& a) {
        using T = decltype(t);
        sparseopt::SgdState<T> state;
        state.momentum_buffer = table<T>(a[0]);
        return state;
      },
      SPARSEOPT_EXACT_KERNELS(sgd));
  bind_exact_optimizer<sparseopt::RmspropOptions>(
      m, "rmsprop", {"square_avg", "momentum_buffer", "grad_avg"},
      [](const sparseopt::RmspropOptions& o) { return sparseopt::rmsprop_exact_layout(o); },
      [](auto t, const std::vector<DeviceArray>& a) {
        using T = decltype(t);
        sparseopt::RmspropState<T> state;
        state.square_avg = table<T>(a[0]);
        state.momentum_buffer = table<T>(a[1]);
        state.grad_avg = table<T>(a[2]);
        return state;
      },
      SPARSEOPT_EXACT_KERNELS(rmsprop));
}
