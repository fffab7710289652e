// sparseopt._core: Adam's (and AdamW's) options, step, flush and exact-mode layout.
#include <sparseopt/optim/adam.hpp>

#include "bindings.hpp"
#include "optim_binding.hpp"

namespace sparseopt::bind {

namespace {

template <class T>
AdamState<T> adam_state(const py::array& p, const AdamOptions& o, py::handle exp_avg,
                        py::handle exp_avg_sq, py::handle max_exp_avg_sq, py::handle row_steps,
                        py::handle last_step, py::handle history, py::handle window,
                        py::handle history_start) {
  AdamState<T> state;
  state.exp_avg = state_table<T>(exp_avg, p, "exp_avg");
  state.exp_avg_sq = state_table<T>(exp_avg_sq, p, "exp_avg_sq");
  if (o.amsgrad) state.max_exp_avg_sq = state_table<T>(max_exp_avg_sq, p, "max_exp_avg_sq");
  if (o.mode == Mode::exact)
    state.exact = exact_state(last_step, history, window, history_start, p, adam_exact_layout(o));
  else if (o.bias_correction == BiasCorrection::row)
    state.row_steps = require_row_counts(row_steps, p, "row_steps");
  return state;
}

}  // namespace

void bind_adam(py::module_& m) {
  py::class_<AdamOptions>(m, "AdamOptions")
      .def(py::init<>())
      .def_readwrite("lr", &AdamOptions::lr)
      .def_readwrite("beta1", &AdamOptions::beta1)
      .def_readwrite("beta2", &AdamOptions::beta2)
      .def_readwrite("eps", &AdamOptions::eps)
      .def_readwrite("weight_decay", &AdamOptions::weight_decay)
      .def_readwrite("decoupled", &AdamOptions::decoupled)
      .def_readwrite("amsgrad", &AdamOptions::amsgrad)
      .def_readwrite("mode", &AdamOptions::mode)
      .def_readwrite("bias_correction", &AdamOptions::bias_correction)
      .def("validate", &AdamOptions::validate)
      .def("exact_layout", [](const AdamOptions& o) { return layout_tuple(adam_exact_layout(o)); });

  m.def(
      "adam_step",
      [](py::handle param, py::handle indices, py::handle values, py::handle bags, py::handle exp_avg,
         py::handle exp_avg_sq, py::handle max_exp_avg_sq, py::handle row_steps,
         py::handle last_step, py::handle history, py::handle window, py::handle history_start, const AdamOptions& options,
         std::int64_t step, int num_threads, py::handle rounding) {
        options.validate();
        run_step(param, indices, values, bags, rounding, exp_avg, "exp_avg",
                 [&](const py::array& p, auto value_tag, auto, auto table, auto grad, const HalfRounding& how) {
          using T = typename decltype(value_tag)::type;
          const AdamState<T> state = adam_state<T>(p, options, exp_avg, exp_avg_sq, max_exp_avg_sq,
                                                   row_steps, last_step, history, window, history_start);
          return [=] { adam_step(table, grad, state, options, step, num_threads, how); };
        });
      },
      py::arg("param"), py::arg("indices"), py::arg("values"), py::arg("bags"), py::arg("exp_avg"),
      py::arg("exp_avg_sq"), py::arg("max_exp_avg_sq"), py::arg("row_steps"),
      py::arg("last_step"), py::arg("history"), py::arg("window"), py::arg("history_start"), py::arg("options"),
      py::arg("step"), py::arg("num_threads"), py::arg("rounding") = py::none());

  m.def(
      "adam_flush",
      [](py::handle param, py::handle indices, py::handle exp_avg, py::handle exp_avg_sq, py::handle max_exp_avg_sq,
         py::handle last_step, py::handle history, py::handle window, py::handle history_start, const AdamOptions& options,
         std::int64_t step, int num_threads, py::handle rounding) {
        options.validate();
        run_flush(param, indices, rounding, exp_avg, "exp_avg",
                  [&](const py::array& p, auto value_tag, auto table, auto ptr, std::int64_t n, const HalfRounding& how) {
          using T = typename decltype(value_tag)::type;
          const AdamState<T> state = adam_state<T>(p, options, exp_avg, exp_avg_sq, max_exp_avg_sq,
                                                   py::none(), last_step, history, window, history_start);
          return [=] { adam_flush(table, state, options, step, num_threads, ptr, n, how); };
        });
      },
      py::arg("param"), py::arg("indices"), py::arg("exp_avg"), py::arg("exp_avg_sq"), py::arg("max_exp_avg_sq"),
      py::arg("last_step"), py::arg("history"), py::arg("window"), py::arg("history_start"), py::arg("options"),
      py::arg("step"), py::arg("num_threads"), py::arg("rounding") = py::none());
}

}  // namespace sparseopt::bind
