// sparseopt._core optimizer steps: SGD, Adagrad, Adam. Each binding checks every array (kind,
// dtype, shape) with the GIL held, then runs the kernel without it; the kernel checks indices
// and hyper-parameters before it writes, so a rejected call changes nothing.
#include <sparseopt/optim/adagrad.hpp>
#include <sparseopt/optim/adam.hpp>
#include <sparseopt/optim/sgd.hpp>

#include "bindings.hpp"
#include "dispatch.hpp"

namespace sparseopt::bind {

namespace {

// Checks param and the gradient, then asks make_call(param, value_tag, index_tag, table, grad)
// (GIL held: it checks its state arrays) for the kernel call, and runs that without the GIL.
template <class MakeCall>
void run_step(py::handle param_obj, py::handle indices_obj, py::handle values_obj,
              MakeCall&& make_call) {
  py::array param = require_param(param_obj);
  const GradientArrays g = require_gradient(indices_obj, values_obj, &param);
  dispatch(g.values, g.indices, [&](auto value_tag, auto index_tag) {
    using T = typename decltype(value_tag)::type;
    using I = typename decltype(index_tag)::type;
    auto call = make_call(param, value_tag, index_tag, table_of<T>(param), row_sparse_of<T, I>(g));
    py::gil_scoped_release release;
    call();
  });
}

template <class T>
Table<T> state_table(py::handle obj, const py::array& param, const char* name) {
  py::array a = require_state_like(obj, param, name);
  return table_of<T>(a);
}

std::int64_t* optional_row_counts(py::handle obj, const py::array& param, const char* name) {
  return obj.is_none() ? nullptr : require_row_counts(obj, param, name);
}

}  // namespace

void bind_optim(py::module_& m) {
  py::enum_<Mode>(m, "Mode").value("lazy", Mode::lazy).value("exact", Mode::exact);
  py::enum_<BiasCorrection>(m, "BiasCorrection")
      .value("global_", BiasCorrection::global)
      .value("row", BiasCorrection::row)
      .value("none", BiasCorrection::none);

  m.def(
      "check_param", [](py::handle param) { require_param(param); }, py::arg("param"),
      "Raises unless param is a writeable, C-contiguous float32/float64 array of >= 1 dimension.");

  py::class_<SgdOptions>(m, "SgdOptions")
      .def(py::init<>())
      .def_readwrite("lr", &SgdOptions::lr)
      .def_readwrite("momentum", &SgdOptions::momentum)
      .def_readwrite("dampening", &SgdOptions::dampening)
      .def_readwrite("nesterov", &SgdOptions::nesterov)
      .def_readwrite("mode", &SgdOptions::mode)
      .def("validate", &SgdOptions::validate);

  py::class_<AdagradOptions>(m, "AdagradOptions")
      .def(py::init<>())
      .def_readwrite("lr", &AdagradOptions::lr)
      .def_readwrite("lr_decay", &AdagradOptions::lr_decay)
      .def_readwrite("eps", &AdagradOptions::eps)
      .def("validate", &AdagradOptions::validate);

  py::class_<AdamOptions>(m, "AdamOptions")
      .def(py::init<>())
      .def_readwrite("lr", &AdamOptions::lr)
      .def_readwrite("beta1", &AdamOptions::beta1)
      .def_readwrite("beta2", &AdamOptions::beta2)
      .def_readwrite("eps", &AdamOptions::eps)
      .def_readwrite("mode", &AdamOptions::mode)
      .def_readwrite("bias_correction", &AdamOptions::bias_correction)
      .def("validate", &AdamOptions::validate);

  m.def(
      "sgd_step",
      [](py::handle param, py::handle indices, py::handle values, py::handle momentum_buffer,
         py::handle row_steps, const SgdOptions& options, int num_threads) {
        run_step(param, indices, values, [&](const py::array& p, auto value_tag, auto, auto table, auto grad) {
          using T = typename decltype(value_tag)::type;
          SgdState<T> state;
          if (options.momentum != 0.0) {
            state.momentum_buffer = state_table<T>(momentum_buffer, p, "momentum_buffer");
            state.row_steps = require_row_counts(row_steps, p, "row_steps");
          }
          return [=] { sgd_step(table, grad, state, options, num_threads); };
        });
      },
      py::arg("param"), py::arg("indices"), py::arg("values"), py::arg("momentum_buffer"),
      py::arg("row_steps"), py::arg("options"), py::arg("num_threads"));

  m.def(
      "adagrad_step",
      [](py::handle param, py::handle indices, py::handle values, py::handle sum,
         const AdagradOptions& options, std::int64_t step, int num_threads) {
        run_step(param, indices, values, [&](const py::array& p, auto value_tag, auto, auto table, auto grad) {
          using T = typename decltype(value_tag)::type;
          const AdagradState<T> state{state_table<T>(sum, p, "sum")};
          return [=] { adagrad_step(table, grad, state, options, step, num_threads); };
        });
      },
      py::arg("param"), py::arg("indices"), py::arg("values"), py::arg("sum"), py::arg("options"),
      py::arg("step"), py::arg("num_threads"));

  m.def(
      "adam_step",
      [](py::handle param, py::handle indices, py::handle values, py::handle exp_avg,
         py::handle exp_avg_sq, py::handle row_steps, const AdamOptions& options,
         std::int64_t step, int num_threads) {
        run_step(param, indices, values, [&](const py::array& p, auto value_tag, auto, auto table, auto grad) {
          using T = typename decltype(value_tag)::type;
          const AdamState<T> state{state_table<T>(exp_avg, p, "exp_avg"),
                                   state_table<T>(exp_avg_sq, p, "exp_avg_sq"),
                                   optional_row_counts(row_steps, p, "row_steps")};
          return [=] { adam_step(table, grad, state, options, step, num_threads); };
        });
      },
      py::arg("param"), py::arg("indices"), py::arg("values"), py::arg("exp_avg"),
      py::arg("exp_avg_sq"), py::arg("row_steps"), py::arg("options"), py::arg("step"),
      py::arg("num_threads"));
}

}  // namespace sparseopt::bind
