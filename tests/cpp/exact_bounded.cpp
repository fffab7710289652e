// A million exact-mode SGD steps from C++ with a fixed-size record (ExactState::first_step):
// the history array never needs more than exact_record_span + 1 rows (a step that would need
// more throws), and after the run the table equals torch.optim.SGD's dense formula, written
// plainly below, to float64 rounding. Both record kinds: a momentum window (momentum alone)
// and products of step matrices (momentum with weight decay). Prints "exact bounded ok".
#include <sparseopt/sparseopt.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "expect.hpp"

namespace {

// torch.optim.SGD on the whole table, with the gradient g (zeros but for the touched row).
struct DenseSgd {
  std::vector<double> p, buf;
  double momentum, weight_decay;
  bool first = true;
  void step(double lr, const std::vector<double>& g) {
    for (std::size_t j = 0; j < p.size(); ++j) {
      const double d = g[j] + weight_decay * p[j];
      buf[j] = first ? d : momentum * buf[j] + d;
      p[j] -= lr * buf[j];
    }
    first = false;
  }
};

void run(double momentum, double weight_decay, std::int64_t steps, const char* name) {
  using namespace sparseopt;
  constexpr std::int64_t rows = 4, width = 2;
  std::vector<double> param(rows * width), buffer(rows * width, 0.0);
  for (std::size_t j = 0; j < param.size(); ++j) param[j] = 0.1 * double(j + 1);
  DenseSgd dense{param, std::vector<double>(param.size(), 0.0), momentum, weight_decay};

  SgdOptions options;
  options.lr = 0.01;
  options.momentum = momentum;
  options.weight_decay = weight_decay;
  options.mode = Mode::exact;
  const ExactLayout layout = sgd_exact_layout(options);
  std::vector<std::int64_t> last_step(rows, 0);
  std::int64_t first_step = 0;
  const std::int64_t capacity = exact_record_span + 1;  // all a bounded record ever needs
  std::vector<double> history(std::size_t(capacity * layout.columns()), 0.0);
  std::vector<double> ring(std::size_t(layout.window * layout.quantities), 0.0);

  SgdState<double> state;
  state.momentum_buffer = Table<double>{buffer.data(), rows, width};
  state.exact = ExactState{last_step.data(), history.data(), capacity, ring.data(), &first_step};
  const Table<double> table{param.data(), rows, width};

  std::vector<double> g(param.size());
  std::int64_t index[1];
  double values[width];
  for (std::int64_t t = 1; t <= steps; ++t) {
    // Row 0 every 1,000 steps, row 1 at step 7 only, rows 2 and 3 never: long rests.
    std::int64_t n = 0;
    if (t % 1000 == 0) index[n++] = 0;
    if (t == 7) index[n++] = 1;
    std::fill(g.begin(), g.end(), 0.0);
    for (std::int64_t k = 0; k < n; ++k)
      for (std::int64_t j = 0; j < width; ++j) {
        values[j] = 0.5 - 0.25 * double(j);
        g[std::size_t(index[k] * width + j)] = values[j];
      }
    options.lr = 0.01 * (1.0 + 0.5 * std::sin(double(t) * 1e-3));  // a schedule
    sgd_step(table, RowSparse<double, std::int64_t>{index, values, n, width}, state, options, t);
    dense.step(options.lr, g);
  }
  sgd_flush(table, state, options, steps);
  expect(first_step == steps - steps % exact_record_span, "the record restarted every span");
  double worst = 0.0;
  for (std::size_t j = 0; j < param.size(); ++j)
    worst = std::max(worst, std::abs(param[j] - dense.p[j]) / std::max(1.0, std::abs(dense.p[j])));
  std::printf("%s: %lld steps, record of %lld rows, max relative difference %.3g\n", name,
              static_cast<long long>(steps), static_cast<long long>(capacity), worst);
  expect(worst < 1e-9, name);
}

}  // namespace

int main() {
  try {
    run(0.9, 0.0, 1000000, "momentum (window)");
    run(0.9, 1e-4, 1000000, "momentum and weight decay (products of step matrices)");
  } catch (const std::exception& e) {
    std::printf("FAILED: %s\n", e.what());
    return 1;
  }
  if (failures) return 1;
  std::printf("exact bounded ok\n");
  return 0;
}
