// Errors thrown by the core. They derive from the standard exceptions so that any binding maps
// them naturally (pybind11: std::invalid_argument -> ValueError, std::out_of_range -> IndexError).
// Every check runs before a kernel writes anything: a thrown call leaves all arrays unchanged.
#pragma once

#include <clocale>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
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

template <class>
inline constexpr bool always_false = false;

// One part of a message: text as it is, characters as characters, integers in decimal, floating
// point numbers with 17 significant digits and a '.' whatever the C locale (%.17g, what an
// ostream with precision 17 writes). Any other type is a compile error.
template <class Part>
void append_part(std::string& out, const Part& part) {
  using P = std::decay_t<Part>;
  if constexpr (std::is_same_v<P, bool>) {
    out += part ? '1' : '0';
  } else if constexpr (std::is_same_v<P, char> || std::is_same_v<P, signed char> ||
                       std::is_same_v<P, unsigned char>) {
    out += char(part);
  } else if constexpr (std::is_integral_v<P>) {
    out += std::to_string(part);
  } else if constexpr (std::is_enum_v<P>) {
    out += std::to_string(static_cast<std::underlying_type_t<P>>(part));
  } else if constexpr (std::is_floating_point_v<P>) {
    // The first of 15, 16 or 17 significant digits that reads back as the same double (0.1,
    // not 0.10000000000000001, as Python's repr writes it; 17 always do). Unlike repr, a whole
    // number has no ".0" and a subnormal may keep more digits than it needs.
    char number[40];
    for (int digits = 15; digits <= 17; ++digits) {
      std::snprintf(number, sizeof number, "%.*g", digits, double(part));
      if (std::strtod(number, nullptr) == double(part)) break;
    }
    const char point = *std::localeconv()->decimal_point;
    for (char* c = number; *c != '\0'; ++c)
      if (*c == point) *c = '.';
    out += number;
  } else if constexpr (std::is_pointer_v<Part> && std::is_convertible_v<Part, const char*>) {
    out += part != nullptr ? part : "(null)";  // C strings
  } else if constexpr (std::is_convertible_v<const Part&, std::string_view>) {
    out += std::string_view(part);  // std::string, string views, string literals
  } else {
    static_assert(always_false<Part>, "concat: pass text, a character, an integer or a floating-point number");
  }
}

// The message made of `parts`. No iostreams: an ostream instantiated inside a CUDA build's module
// (host code compiled by nvcc) crashed formatting a number, in every error message that had one.
template <class... Parts>
std::string concat(Parts&&... parts) {
  std::string out;
  (append_part(out, parts), ...);
  return out;
}

template <class... Parts>
void require(bool ok, Parts&&... message) {
  if (!ok) throw invalid_argument(concat(std::forward<Parts>(message)...));
}

}  // namespace detail
}  // namespace sparseopt
