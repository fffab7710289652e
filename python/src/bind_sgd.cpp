// sparseopt._core: SGD's options, step, flush and exact-mode layout.
#include <sparseopt/optim/sgd.hpp>

#include "bindings.hpp"
#include "optim_binding.hpp"

namespace sparseopt::bind {

namespace {

template <class T>
SgdState<T> sgd_state(const py::array& p, const SgdOptions& o, py::handle momentum_buffer,
                      py::handle row_steps, py::handle last_step, py::handle history,
                      py::handle window, py::handle history_start) {
  SgdState<T> state;
  if (o.momentum != 0.0) state.momentum_buffer = state_table<T>(momentum_buffer, p, "momentum_buffer");
  if (o.mode == Mode::exact)
    state.exact = exact_state(last_step, history, window, history_start, p, sgd_exact_layout(o));
  else if (o.momentum != 0.0)
    state.row_steps = require_row_counts(row_steps, p, "row_steps");
  return state;
}

}  // namespace

void bind_sgd(py::module_& m) {
  py::class_<SgdOptions>(m, "SgdOptions")
      .def(py::init<>())
      .def_readwrite("lr", &SgdOptions::lr)
      .def_readwrite("momentum", &SgdOptions::momentum)
      .def_readwrite("dampening", &SgdOptions::dampening)
      .def_readwrite("nesterov", &SgdOptions::nesterov)
      .def_readwrite("weight_decay", &SgdOptions::weight_decay)
      .def_readwrite("mode", &SgdOptions::mode)
      .def("validate", &SgdOptions::validate)
      .def("exact_layout", [](const SgdOptions& o) { return layout_tuple(sgd_exact_layout(o)); });

  m.def(
      "sgd_step",
      [](py::handle param, py::handle indices, py::handle values, py::handle bags, py::handle momentum_buffer,
         py::handle row_steps, py::handle last_step, py::handle history, py::handle window, py::handle history_start,
         const SgdOptions& options, std::int64_t step, int num_threads, py::handle rounding) {
        options.validate();
        run_step(param, indices, values, bags, rounding, options.momentum != 0.0 ? momentum_buffer : py::handle(Py_None), "momentum_buffer",
                 [&](const py::array& p, auto value_tag, auto, auto table, auto grad, const HalfRounding& how) {
          using T = typename decltype(value_tag)::type;
          const SgdState<T> state = sgd_state<T>(p, options, momentum_buffer, row_steps,
                                                 last_step, history, window, history_start);
          return [=] { sgd_step(table, grad, state, options, step, num_threads, how); };
        });
      },
      py::arg("param"), py::arg("indices"), py::arg("values"), py::arg("bags"), py::arg("momentum_buffer"),
      py::arg("row_steps"), py::arg("last_step"), py::arg("history"), py::arg("window"), py::arg("history_start"),
      py::arg("options"), py::arg("step"), py::arg("num_threads"), py::arg("rounding") = py::none());

  m.def(
      "sgd_flush",
      [](py::handle param, py::handle indices, py::handle momentum_buffer, py::handle last_step, py::handle history,
         py::handle window, py::handle history_start, const SgdOptions& options, std::int64_t step, int num_threads, py::handle rounding) {
        options.validate();
        run_flush(param, indices, rounding, options.momentum != 0.0 ? momentum_buffer : py::handle(Py_None), "momentum_buffer",
                  [&](const py::array& p, auto value_tag, auto table, auto ptr, std::int64_t n, const HalfRounding& how) {
          using T = typename decltype(value_tag)::type;
          const SgdState<T> state = sgd_state<T>(p, options, momentum_buffer, py::none(),
                                                 last_step, history, window, history_start);
          return [=] { sgd_flush(table, state, options, step, num_threads, ptr, n, how); };
        });
      },
      py::arg("param"), py::arg("indices"), py::arg("momentum_buffer"), py::arg("last_step"), py::arg("history"),
      py::arg("window"), py::arg("history_start"), py::arg("options"), py::arg("step"), py::arg("num_threads"), py::arg("rounding") = py::none());
}

}  // namespace sparseopt::bind
