// The parts of the module, each bound in its own file.
#pragma once

#include <pybind11/pybind11.h>

namespace sparseopt::bind {

void bind_coalesce(pybind11::module_& m);
void bind_optim(pybind11::module_& m);

}  // namespace sparseopt::bind
