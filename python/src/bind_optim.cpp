// What the optimizer bindings share at module level: the option enums and the param check.
#include <sparseopt/optim/adam.hpp>

#include "bindings.hpp"
#include "optim_binding.hpp"

namespace sparseopt::bind {

void bind_optim(py::module_& m) {
  py::enum_<Mode>(m, "Mode").value("lazy", Mode::lazy).value("exact", Mode::exact);
  py::enum_<BiasCorrection>(m, "BiasCorrection")
      .value("global_", BiasCorrection::global)
      .value("row", BiasCorrection::row)
      .value("none", BiasCorrection::none);

  m.def(
      "check_param", [](py::handle param) { require_param(param); }, py::arg("param"),
      "Raises unless param is a writeable, C-contiguous float32/float64 array of >= 1 dimension.");
}

}  // namespace sparseopt::bind
