// sparseopt._cuda: device arrays (anything with __cuda_array_interface__: CuPy, Numba, torch
// CUDA tensors) handed to the CUDA kernels without a copy. Checks every array (dtype, C order,
// shape, one device, device memory) before any kernel runs, then releases the GIL. The option
// objects are _core's (sparseopt._core must be imported first). Kernels run on the stream
// passed as an integer handle (0: the legacy default stream).
#include <pybind11/numpy.h>  // exact mode's host record (exact_bindings.hpp)
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include <sparseopt/cuda/sparseopt_cuda.hpp>

namespace py = pybind11;
using sparseopt::detail::concat;
using sparseopt::detail::require;

namespace {

// One argument's __cuda_array_interface__, checked to be C-contiguous device memory.
struct DeviceArray {
  void* data = nullptr;
  std::vector<std::int64_t> shape;
  std::string typestr;
  const char* name = "";
  int device = -1;
  bool present = false;

  std::int64_t rows() const { return shape.empty() ? 1 : shape[0]; }
  std::int64_t row_width() const {
    std::int64_t w = 1;
    for (std::size_t i = 1; i < shape.size(); ++i) w *= shape[i];
    return w;
  }
  std::int64_t size() const { return rows() * row_width(); }
};

const char* dtype_name(const std::string& t) {
  if (t == "<f4") return "float32";
  if (t == "<f8") return "float64";
  if (t == "<i4") return "int32";
  if (t == "<i8") return "int64";
  return nullptr;
}

std::int64_t item_size(const std::string& t) { return t.size() == 3 ? t[2] - '0' : 0; }

DeviceArray device_array(py::handle obj, const char* name, bool writable) {
  DeviceArray a;
  a.name = name;
  if (obj.is_none()) return a;
  // Read once: the property builds a new dict at each read (torch's costs microseconds).
  const py::object interface = py::getattr(obj, "__cuda_array_interface__", py::none());
  require(!interface.is_none(), name,
          " must be a device array (with __cuda_array_interface__, as CuPy, Numba and torch CUDA tensors "
          "have) like the parameter; got ", std::string(py::str(py::type::of(obj))),
          ": keep the parameter, its state and the gradient on one device");
  const py::dict cai = interface;
  const py::tuple data = cai["data"];
  a.data = reinterpret_cast<void*>(data[0].cast<std::uintptr_t>());
  require(!(writable && data[1].cast<bool>()), name, " is read-only; pass a writable array");
  for (auto d : cai["shape"].cast<py::tuple>()) a.shape.push_back(d.cast<std::int64_t>());
  a.typestr = cai["typestr"].cast<std::string>();
  require(dtype_name(a.typestr) != nullptr, name, " has the unsupported dtype ", a.typestr,
          "; the CUDA kernels take float32/float64 tables and int32/int64 indices");
  if (cai.contains("strides") && !cai["strides"].is_none()) {
    std::int64_t expect = item_size(a.typestr);
    const auto strides = cai["strides"].cast<std::vector<std::int64_t>>();
    for (std::size_t i = a.shape.size(); i-- > 0;) {
      require(a.shape[i] <= 1 || strides[i] == expect, name,
              " must be C-contiguous (a copy would be what the kernel reads or updates, not your array): "
              "pass the array itself, allocated in C order");
      expect *= a.shape[i];
    }
  }
  a.present = true;
  if (a.data != nullptr) {
    cudaPointerAttributes attributes{};
    const cudaError_t status = cudaPointerGetAttributes(&attributes, a.data);
    if (status != cudaSuccess) cudaGetLastError();
    require(status == cudaSuccess &&
                (attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged),
            name, " does not point to device memory the CUDA runtime knows (",
            status == cudaSuccess ? "host memory" : cudaGetErrorString(status), ")");
    a.device = attributes.device;
  }
  return a;
}

void require_dtype(const DeviceArray& a, const std::string& typestr) {
  if (!a.present) return;
  require(a.typestr == typestr, a.name, " must have dtype ", dtype_name(typestr), " (", a.name == std::string("values")
          ? "the parameter's" : "as the parameter", "), got ", dtype_name(a.typestr));
}

// The arrays of one call: all on the parameter's device, and that device current while the
// kernels are queued.
class Call {
 public:
  explicit Call(const DeviceArray& param) : device_(param.device) {}
  void add(const DeviceArray& a) {
    if (!a.present || a.device < 0) return;
    if (device_ < 0) device_ = a.device;
    require(a.device == device_, a.name, " is on device ", a.device, " but the parameter is on device ", device_,
            "; keep a table, its state and its gradient on one device");
  }
  template <class F>
  auto run(F&& kernel) {
    int previous = 0;
    const bool switch_device = device_ >= 0 && cudaGetDevice(&previous) == cudaSuccess && previous != device_;
    if (switch_device) {
      const cudaError_t status = cudaSetDevice(device_);
      if (status != cudaSuccess) {
        cudaGetLastError();
        throw sparseopt::cuda::cuda_error(concat("cudaSetDevice(", device_, "): ", cudaGetErrorString(status)));
      }
    }
    // An error another library left pending would be reported by this call's first launch
    // check, after its update was queued: clear it first.
    cudaGetLastError();
    struct Restore {
      bool on;
      int device;
      ~Restore() {
        if (on && cudaSetDevice(device) != cudaSuccess) cudaGetLastError();
      }
    } restore{switch_device, previous};
    py::gil_scoped_release release;
    return kernel();
  }

 private:
  int device_;
};

cudaStream_t to_stream(std::uintptr_t handle) { return reinterpret_cast<cudaStream_t>(handle); }

template <class T>
sparseopt::Table<T> table(const DeviceArray& a) {
  if (!a.present) return {};
  return {static_cast<T*>(a.data), a.rows(), a.row_width()};
}

// The parameter, the gradient and the state arrays of one step, checked and typed.
struct StepArrays {
  DeviceArray param, indices, values;
  std::vector<DeviceArray> state;
};

StepArrays step_arrays(py::handle param, py::handle indices, py::handle values, py::handle bags,
                       std::vector<std::pair<py::handle, const char*>> state) {
  require(bags.is_none(), "step_bags is not implemented on the device yet; compute the table's gradient with "
          "sparseopt.gather_sum_backward (it runs on the device) and call step()");
  StepArrays s;
  s.param = device_array(param, "param", true);
  require(s.param.present && (s.param.typestr == "<f4" || s.param.typestr == "<f8"),
          "param must be a float32 or float64 device array");
  require(!s.param.shape.empty(), "param must have at least one dimension (rows first)");
  s.indices = device_array(indices, "indices", false);
  s.values = device_array(values, "values", false);
  require(s.indices.present && s.indices.shape.size() == 1 && (s.indices.typestr == "<i4" || s.indices.typestr == "<i8"),
          "indices must be a 1-D int32 or int64 device array");
  require(s.values.present, "values must be a device array");
  require_dtype(s.values, s.param.typestr);
  std::vector<std::int64_t> row_shape(s.param.shape.begin() + 1, s.param.shape.end());
  std::vector<std::int64_t> want{s.indices.shape[0]};
  want.insert(want.end(), row_shape.begin(), row_shape.end());
  require(s.values.shape == want, "values must have shape (len(indices), *param.shape[1:]) = ",
          std::string(py::str(py::cast(want))), ", got ", std::string(py::str(py::cast(s.values.shape))));
  for (auto& [obj, name] : state) {
    DeviceArray a = device_array(obj, name, true);
    if (std::string(name) == "row_steps") {
      require_dtype(a, "<i8");
      require(!a.present || (a.shape.size() == 1 && a.shape[0] == s.param.rows()), "row_steps must have shape (",
              s.param.rows(), ",)");
    } else if (std::string(name) == "sum" && a.present && a.shape.size() == 1 && s.param.shape.size() > 1) {
      require_dtype(a, s.param.typestr);  // row-wise Adagrad: one value per row
      require(a.shape[0] == s.param.rows(), "sum must have shape (", s.param.rows(), ",)");
    } else {
      require_dtype(a, s.param.typestr);
      require(!a.present || a.shape == s.param.shape, name, " must have the parameter's shape");
    }
    s.state.push_back(a);
  }
  Call check(s.param);
  check.add(s.indices);
  check.add(s.values);
  for (const auto& a : s.state) check.add(a);
  return s;
}

template <class F>
void dispatch_types(const std::string& table, const std::string& index, F&& f);

// Calls f(T{}, I{}) for the step's dtypes.
template <class F>
void dispatch(const StepArrays& s, F&& f) {
  dispatch_types(s.param.typestr, s.indices.typestr, f);
}

// Runs f(T{}, I{}) for the step's dtypes on the parameter's device, without the GIL.
template <class F>
void run_step(const StepArrays& s, F&& f) {
  Call(s.param).run([&] { dispatch(s, f); });
}

template <class T, class I>
sparseopt::RowSparse<T, I> gradient(const StepArrays& s) {
  return {static_cast<const I*>(s.indices.data), static_cast<const T*>(s.values.data), s.indices.shape[0],
          s.param.row_width()};
}

// The bags of a gather: indptr and indices of one integer dtype, weights of the rows' dtype.
struct BagArrays {
  DeviceArray indptr, indices, weights;
};

BagArrays bag_arrays(py::handle indptr, py::handle indices, py::handle weights, const DeviceArray& rows) {
  BagArrays b{device_array(indptr, "indptr", false), device_array(indices, "indices", false),
              device_array(weights, "weights", false)};
  require(b.indices.present && b.indices.shape.size() == 1 && (b.indices.typestr == "<i4" || b.indices.typestr == "<i8"),
          "indices must be a 1-D int32 or int64 device array");
  require(b.indptr.present && b.indptr.shape.size() == 1 && b.indptr.shape[0] >= 1,
          "indptr must be a 1-D device array of num_bags + 1 offsets");
  require_dtype(b.indptr, b.indices.typestr);
  require_dtype(b.weights, rows.typestr);
  require(!b.weights.present || b.weights.shape == std::vector<std::int64_t>{b.indices.shape[0]},
          "weights must have shape (len(indices),)");
  return b;
}

template <class T, class I>
sparseopt::Bags<T, I> bags_of(const BagArrays& b) {
  return {static_cast<const I*>(b.indptr.data), static_cast<const I*>(b.indices.data),
          static_cast<const T*>(b.weights.data), b.indptr.shape[0] - 1, b.indices.shape[0]};
}

// Calls f(T{}, I{}) for a float table and an index dtype.
template <class F>
void dispatch_types(const std::string& table, const std::string& index, F&& f) {
  const bool f64 = table == "<f8", i64 = index == "<i8";
  if (f64)
    i64 ? f(double{}, std::int64_t{}) : f(double{}, std::int32_t{});
  else
    i64 ? f(float{}, std::int64_t{}) : f(float{}, std::int32_t{});
}

#include "exact_bindings.hpp"

}  // namespace

// name(param, options): raises ValueError unless options.validate_in<T>() accepts them for
// param's dtype (the check every step makes), for Python to run before any step.
template <class Options>
void def_check_options(py::module_& m, const char* name) {
  m.def(
      name,
      [](py::handle param_obj, const Options& options) {
        const DeviceArray param = device_array(param_obj, "param", false);
        require(param.present && (param.typestr == "<f4" || param.typestr == "<f8"),
                "param must be a float32 or float64 device array");
        param.typestr == "<f8" ? options.template validate_in<double>() : options.template validate_in<float>();
      },
      py::arg("param"), py::arg("options"), "Raises ValueError unless options suit param's dtype (as every step).");
}

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "sparseopt's CUDA kernels for device arrays (private: use the sparseopt package)";
  py::module_::import("sparseopt._core");  // the option types
  py::register_exception<sparseopt::cuda::not_implemented>(m, "NotImplementedOnDevice", PyExc_NotImplementedError);
  py::register_exception<sparseopt::cuda::cuda_error>(m, "CudaError", PyExc_RuntimeError);
  m.def("device_count", &sparseopt::cuda::device_count,
        "The number of CUDA devices this process sees (0 without a driver or a device; never raises).");
  bind_exact(m);

  using py::arg;
  m.def(
      "sgd_step",
      [](py::handle param, py::handle indices, py::handle values, py::handle bags, py::handle buffer,
         py::handle row_steps, const sparseopt::SgdOptions& o,
         std::int64_t step, std::uintptr_t stream) {
        auto s = step_arrays(param, indices, values, bags, {{buffer, "momentum_buffer"}, {row_steps, "row_steps"}});
        run_step(s, [&](auto t, auto i) {
          using T = decltype(t);
          using I = decltype(i);
          sparseopt::SgdState<T> state{table<T>(s.state[0]), static_cast<std::int64_t*>(s.state[1].data), {}};
          sparseopt::cuda::sgd_step<T, I>(table<T>(s.param), gradient<T, I>(s), state, o, step, to_stream(stream));
        });
      },
      arg("param"), arg("indices"), arg("values"), arg("bags"), arg("momentum_buffer"), arg("row_steps"),
      arg("options"), arg("step"), arg("stream") = 0);
  m.def(
      "adam_step",
      [](py::handle param, py::handle indices, py::handle values, py::handle bags, py::handle exp_avg,
         py::handle exp_avg_sq, py::handle max_exp_avg_sq, py::handle row_steps,
         const sparseopt::AdamOptions& o, std::int64_t step, std::uintptr_t stream) {
        auto s = step_arrays(param, indices, values, bags,
                             {{exp_avg, "exp_avg"}, {exp_avg_sq, "exp_avg_sq"}, {max_exp_avg_sq, "max_exp_avg_sq"},
                              {row_steps, "row_steps"}});
        run_step(s, [&](auto t, auto i) {
          using T = decltype(t);
          using I = decltype(i);
          sparseopt::AdamState<T> state;
          state.exp_avg = table<T>(s.state[0]);
          state.exp_avg_sq = table<T>(s.state[1]);
          state.max_exp_avg_sq = table<T>(s.state[2]);
          state.row_steps = static_cast<std::int64_t*>(s.state[3].data);
          sparseopt::cuda::adam_step<T, I>(table<T>(s.param), gradient<T, I>(s), state, o, step, to_stream(stream));
        });
      },
      arg("param"), arg("indices"), arg("values"), arg("bags"), arg("exp_avg"), arg("exp_avg_sq"),
      arg("max_exp_avg_sq"), arg("row_steps"), arg("options"),
      arg("step"), arg("stream") = 0);
  m.def(
      "adagrad_step",
      [](py::handle param, py::handle indices, py::handle values, py::handle bags, py::handle sum,
         const sparseopt::AdagradOptions& o, std::int64_t step, std::uintptr_t stream) {
        auto s = step_arrays(param, indices, values, bags, {{sum, "sum"}});
        run_step(s, [&](auto t, auto i) {
          using T = decltype(t);
          using I = decltype(i);
          sparseopt::AdagradState<T> state{table<T>(s.state[0])};
          sparseopt::cuda::adagrad_step<T, I>(table<T>(s.param), gradient<T, I>(s), state, o, step,
                                              to_stream(stream));
        });
      },
      arg("param"), arg("indices"), arg("values"), arg("bags"), arg("sum"), arg("options"), arg("step"),
      arg("stream") = 0);
  m.def(
      "rmsprop_step",
      [](py::handle param, py::handle indices, py::handle values, py::handle bags, py::handle square_avg,
         py::handle momentum_buffer, py::handle grad_avg, const sparseopt::RmspropOptions& o, std::int64_t step, std::uintptr_t stream) {
        auto s = step_arrays(param, indices, values, bags,
                             {{square_avg, "square_avg"}, {momentum_buffer, "momentum_buffer"}, {grad_avg, "grad_avg"}});
        run_step(s, [&](auto t, auto i) {
          using T = decltype(t);
          using I = decltype(i);
          sparseopt::RmspropState<T> state;
          state.square_avg = table<T>(s.state[0]);
          state.momentum_buffer = table<T>(s.state[1]);
          state.grad_avg = table<T>(s.state[2]);
          sparseopt::cuda::rmsprop_step<T, I>(table<T>(s.param), gradient<T, I>(s), state, o, step,
                                              to_stream(stream));
        });
      },
      arg("param"), arg("indices"), arg("values"), arg("bags"), arg("square_avg"), arg("momentum_buffer"),
      arg("grad_avg"), arg("options"), arg("step"),
      arg("stream") = 0);
  m.def(
      "rowwise_adagrad_step",
      [](py::handle param, py::handle indices, py::handle values, py::handle bags, py::handle sum,
         const sparseopt::RowWiseAdagradOptions& o, std::uintptr_t stream) {
        auto s = step_arrays(param, indices, values, bags, {{sum, "sum"}});
        run_step(s, [&](auto t, auto i) {
          using T = decltype(t);
          using I = decltype(i);
          sparseopt::RowWiseAdagradState<T> state{static_cast<T*>(s.state[0].data)};
          sparseopt::cuda::rowwise_adagrad_step<T, I>(table<T>(s.param), gradient<T, I>(s), state, o,
                                                      to_stream(stream));
        });
      },
      arg("param"), arg("indices"), arg("values"), arg("bags"), arg("sum"), arg("options"), arg("stream") = 0);
  def_check_options<sparseopt::FtrlOptions>(m, "ftrl_check_options");
  def_check_options<sparseopt::RowWiseAdagradOptions>(m, "rowwise_adagrad_check_options");
  m.def(
      "ftrl_step",
      [](py::handle param, py::handle indices, py::handle values, py::handle bags, py::handle accumulator,
         py::handle linear, const sparseopt::FtrlOptions& o, std::uintptr_t stream) {
        auto s = step_arrays(param, indices, values, bags, {{accumulator, "accumulator"}, {linear, "linear"}});
        run_step(s, [&](auto t, auto i) {
          using T = decltype(t);
          using I = decltype(i);
          sparseopt::FtrlState<T> state{table<T>(s.state[0]), table<T>(s.state[1])};
          sparseopt::cuda::ftrl_step<T, I>(table<T>(s.param), gradient<T, I>(s), state, o, to_stream(stream));
        });
      },
      arg("param"), arg("indices"), arg("values"), arg("bags"), arg("accumulator"), arg("linear"), arg("options"),
      arg("stream") = 0);

  m.def(
      "coalesce",
      [](py::handle indices_obj, py::handle values_obj, std::int64_t num_rows, py::handle unique_obj,
         py::handle summed_obj, py::handle counts_obj, std::uintptr_t stream) {
        const DeviceArray indices = device_array(indices_obj, "indices", false);
        const DeviceArray values = device_array(values_obj, "values", false);
        require(indices.present && indices.shape.size() == 1 && (indices.typestr == "<i4" || indices.typestr == "<i8"),
                "indices must be a 1-D int32 or int64 device array");
        require(values.present && (values.typestr == "<f4" || values.typestr == "<f8") && !values.shape.empty() &&
                    values.shape[0] == indices.shape[0],
                "values must be a float32 or float64 device array with one row per index");
        const DeviceArray unique = device_array(unique_obj, "unique", true), summed = device_array(summed_obj, "summed", true),
                          counts = device_array(counts_obj, "counts", true);
        require_dtype(unique, indices.typestr);
        require_dtype(summed, values.typestr);
        require_dtype(counts, "<i8");
        require(unique.present && summed.present && counts.present && unique.shape.size() == 1 &&
                    counts.shape == unique.shape && summed.rows() == unique.rows() &&
                    summed.row_width() == values.row_width(),
                "unique, summed and counts must hold the same number of rows, summed of values' row shape");
        Call call(values);
        for (const DeviceArray* a : {&indices, &unique, &summed, &counts}) call.add(*a);
        std::int64_t u = 0;
        call.run([&] {
          dispatch_types(values.typestr, indices.typestr, [&](auto t, auto i) {
            using T = decltype(t);
            using I = decltype(i);
            u = sparseopt::cuda::coalesce<T, I>(
                {static_cast<const I*>(indices.data), static_cast<const T*>(values.data), indices.shape[0],
                 values.row_width()},
                num_rows, static_cast<I*>(unique.data), static_cast<T*>(summed.data),
                static_cast<std::int64_t*>(counts.data), unique.rows(), to_stream(stream));
          });
        });
        return u;
      },
      arg("indices"), arg("values"), arg("num_rows"), arg("unique"), arg("summed"), arg("counts"), arg("stream") = 0);
  m.def(
      "gather_sum",
      [](py::handle table_obj, py::handle indptr, py::handle indices, py::handle weights, bool mean,
         py::handle out_obj, std::uintptr_t stream) {
        const DeviceArray table = device_array(table_obj, "table", false);
        require(table.present && (table.typestr == "<f4" || table.typestr == "<f8") && !table.shape.empty(),
                "table must be a float32 or float64 device array with rows first");
        const BagArrays b = bag_arrays(indptr, indices, weights, table);
        const DeviceArray out = device_array(out_obj, "out", true);
        require_dtype(out, table.typestr);
        std::vector<std::int64_t> want{b.indptr.shape[0] - 1};
        want.insert(want.end(), table.shape.begin() + 1, table.shape.end());
        require(out.shape == want, "out must have shape (num_bags, *table.shape[1:])");
        Call call(table);
        for (const DeviceArray* a : {&b.indptr, &b.indices, &b.weights, &out}) call.add(*a);
        call.run([&] {
          dispatch_types(table.typestr, b.indices.typestr, [&](auto t, auto i) {
            using T = decltype(t);
            using I = decltype(i);
            sparseopt::cuda::gather_sum<T, I>(
                {static_cast<const T*>(table.data), table.rows(), table.row_width()}, bags_of<T, I>(b),
                {static_cast<T*>(out.data), out.rows(), out.row_width()},
                mean ? sparseopt::BagReduction::mean : sparseopt::BagReduction::sum, to_stream(stream));
          });
        });
      },
      arg("table"), arg("indptr"), arg("indices"), arg("weights"), arg("mean"), arg("out"), arg("stream") = 0);
  m.def(
      "gather_sum_backward",
      [](py::handle grad_obj, py::handle indptr, py::handle indices, py::handle weights, bool mean,
         std::int64_t num_rows, py::handle rows_obj, py::handle values_obj, std::uintptr_t stream) {
        const DeviceArray grad_out = device_array(grad_obj, "grad_out", false);
        require(grad_out.present && (grad_out.typestr == "<f4" || grad_out.typestr == "<f8") &&
                    !grad_out.shape.empty(),
                "grad_out must be a float32 or float64 device array with one row per bag");
        const BagArrays b = bag_arrays(indptr, indices, weights, grad_out);
        const DeviceArray rows = device_array(rows_obj, "rows", true), values = device_array(values_obj, "values", true);
        require_dtype(rows, b.indices.typestr);
        require_dtype(values, grad_out.typestr);
        require(rows.present && values.present && rows.shape.size() == 1 && values.rows() == rows.rows() &&
                    values.row_width() == grad_out.row_width(),
                "rows and values must hold the same number of rows, of grad_out's row shape");
        Call call(grad_out);
        for (const DeviceArray* a : {&b.indptr, &b.indices, &b.weights, &rows, &values}) call.add(*a);
        std::int64_t unique = 0;
        call.run([&] {
          dispatch_types(grad_out.typestr, b.indices.typestr, [&](auto t, auto i) {
            using T = decltype(t);
            using I = decltype(i);
            unique = sparseopt::cuda::gather_sum_backward<T, I>(
                {static_cast<const T*>(grad_out.data), grad_out.rows(), grad_out.row_width()}, bags_of<T, I>(b),
                num_rows, static_cast<I*>(rows.data), static_cast<T*>(values.data), rows.rows(),
                mean ? sparseopt::BagReduction::mean : sparseopt::BagReduction::sum, to_stream(stream));
          });
        });
        return unique;
      },
      arg("grad_out"), arg("indptr"), arg("indices"), arg("weights"), arg("mean"), arg("num_rows"), arg("rows"),
      arg("values"), arg("stream") = 0);
  m.def(
      "topk",
      [](py::handle x_obj, std::int64_t k, bool largest, bool magnitude, py::handle values_obj,
         py::handle indices_obj, std::uintptr_t stream) {
        const DeviceArray x = device_array(x_obj, "x", false);
        require(x.present && (x.typestr == "<f4" || x.typestr == "<f8") && (x.shape.size() == 1 || x.shape.size() == 2),
                "x must be a 1-D or 2-D float32 or float64 device array");
        const DeviceArray values = device_array(values_obj, "values", true);
        const DeviceArray indices = device_array(indices_obj, "indices", true);
        std::vector<std::int64_t> want(x.shape.begin(), x.shape.end() - 1);
        want.push_back(k);
        require_dtype(values, x.typestr);
        require_dtype(indices, "<i8");
        require(values.shape == want && indices.shape == want, "values and indices must have shape x.shape[:-1] + (k,)");
        const std::int64_t n = x.shape.back(), rows = x.shape.size() == 2 ? x.shape[0] : 1;
        sparseopt::TopkOptions options;
        options.largest = largest;
        options.magnitude = magnitude;
        Call call(x);
        call.add(values);
        call.add(indices);
        call.run([&] {
          if (x.typestr == "<f8")
            sparseopt::cuda::topk_rows(static_cast<const double*>(x.data), rows, n, k, static_cast<double*>(values.data),
                                       static_cast<std::int64_t*>(indices.data), options, to_stream(stream));
          else
            sparseopt::cuda::topk_rows(static_cast<const float*>(x.data), rows, n, k, static_cast<float*>(values.data),
                                       static_cast<std::int64_t*>(indices.data), options, to_stream(stream));
        });
      },
      arg("x"), arg("k"), arg("largest"), arg("magnitude"), arg("values"), arg("indices"), arg("stream") = 0);
}
