// sparseopt._core: RMSprop's options, step, flush and exact-mode layout.
#include <sparseopt/optim/rmsprop.hpp>

#include "bindings.hpp"
#include "optim_binding.hpp"

namespace sparseopt::bind {

namespace {

template <class T>
RmspropState<T> rmsprop_state(const py::array& p, const RmspropOptions& o, py::handle square_avg,
                              py::handle momentum_buffer, py::handle grad_avg,
                              py::handle last_step, py::handle history, py::handle window,
                              py::handle history_start) {
  RmspropState<T> state;
  state.square_avg = state_table<T>(square_avg, p, "square_avg");
  if (o.momentum != 0.0) state.momentum_buffer = state_table<T>(momentum_buffer, p, "momentum_buffer");
  if (o.centered) state.grad_avg = state_table<T>(grad_avg, p, "grad_avg");
  if (o.mode == Mode::exact)
    state.exact = exact_state(last_step, history, window, history_start, p, rmsprop_exact_layout(o));
  return state;
}

}  // namespace

void bind_rmsprop(py::module_& m) {
  py::class_<RmspropOptions>(m, "RmspropOptions")
      .def(py::init<>())
      .def_readwrite("lr", &RmspropOptions::lr)
      .def_readwrite("alpha", &RmspropOptions::alpha)
      .def_readwrite("eps", &RmspropOptions::eps)
      .def_readwrite("momentum", &RmspropOptions::momentum)
      .def_readwrite("centered", &RmspropOptions::centered)
      .def_readwrite("mode", &RmspropOptions::mode)
      .def("validate", &RmspropOptions::validate)
      .def("exact_layout",
           [](const RmspropOptions& o) { return layout_tuple(rmsprop_exact_layout(o)); });

  m.def(
      "rmsprop_step",
      [](py::handle param, py::handle indices, py::handle values, py::handle bags, py::handle square_avg,
         py::handle momentum_buffer, py::handle grad_avg, py::handle last_step,
         py::handle history, py::handle window, py::handle history_start, const RmspropOptions& options,
         std::int64_t step, int num_threads, py::handle rounding) {
        options.validate();
        run_step(param, indices, values, bags, rounding, square_avg, "square_avg",
                 [&](const py::array& p, auto value_tag, auto, auto table, auto grad, const HalfRounding& how) {
          using T = typename decltype(value_tag)::type;
          const RmspropState<T> state = rmsprop_state<T>(p, options, square_avg, momentum_buffer,
                                                         grad_avg, last_step, history, window, history_start);
          return [=] { rmsprop_step(table, grad, state, options, step, num_threads, how); };
        });
      },
      py::arg("param"), py::arg("indices"), py::arg("values"), py::arg("bags"), py::arg("square_avg"),
      py::arg("momentum_buffer"), py::arg("grad_avg"), py::arg("last_step"), py::arg("history"),
      py::arg("window"), py::arg("history_start"), py::arg("options"), py::arg("step"), py::arg("num_threads"), py::arg("rounding") = py::none());

  m.def(
      "rmsprop_flush",
      [](py::handle param, py::handle indices, py::handle square_avg, py::handle momentum_buffer, py::handle grad_avg,
         py::handle last_step, py::handle history, py::handle window, py::handle history_start,
         const RmspropOptions& options, std::int64_t step, int num_threads, py::handle rounding) {
        options.validate();
        run_flush(param, indices, rounding, square_avg, "square_avg",
                  [&](const py::array& p, auto value_tag, auto table, auto ptr, std::int64_t n, const HalfRounding& how) {
          using T = typename decltype(value_tag)::type;
          const RmspropState<T> state = rmsprop_state<T>(p, options, square_avg, momentum_buffer,
                                                         grad_avg, last_step, history, window, history_start);
          return [=] { rmsprop_flush(table, state, options, step, num_threads, ptr, n, how); };
        });
      },
      py::arg("param"), py::arg("indices"), py::arg("square_avg"), py::arg("momentum_buffer"), py::arg("grad_avg"),
      py::arg("last_step"), py::arg("history"), py::arg("window"), py::arg("history_start"), py::arg("options"),
      py::arg("step"), py::arg("num_threads"), py::arg("rounding") = py::none());
}

}  // namespace sparseopt::bind
