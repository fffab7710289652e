// Errors thrown by the core. They derive from the standard exceptions so that any binding maps
// them naturally (pybind11: std::invalid_argument -> ValueError, std::out_of_range -> IndexError).
// Every check runs before a kernel writes anything: a thrown call leaves all arrays unchanged.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace sparseopt {

// A bad shape, hyper-parameter or option.
struct invalid_argument : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// An index outside [0, num_rows).
struct index_error : std::out_of_range {
  using std::out_of_range::out_of_range;
};

namespace detail {

template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  out.precision(17);
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}

template <class... Parts>
void require(bool ok, Parts&&... message) {
  if (!ok) throw invalid_argument(concat(std::forward<Parts>(message)...));
}

}  // namespace detail
}  // namespace sparseopt
