// The C++ test programs' check: expect(ok, what) prints what failed and counts it; main()
// returns non-zero when failures > 0.
#pragma once

#include <cstdio>

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::printf("FAILED: %s\n", what);
    ++failures;
  }
}

}  // namespace
