// sparseopt._core: sampled logistic losses over embedding tables (loss, coalesced gradients,
// fused SGD) and the samplers that feed them (alias table, negatives, context-window pairs).
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sparseopt/sampled.hpp>
#include <sparseopt/sampling.hpp>

#include "bindings.hpp"
#include "dispatch.hpp"

namespace sparseopt::bind {

namespace {

// The two tables: float32/float64, at least one dimension, the same dtype and row shape.
// `writes`: the kernel updates them in place.
struct SampledTables {
  py::array a, b;
};

SampledTables require_tables(py::handle a_obj, py::handle b_obj, bool writes) {
  SampledTables t;
  t.a = writes ? require_writeable(a_obj, "anchor_table") : require_array(a_obj, "anchor_table");
  t.b = writes ? require_writeable(b_obj, "candidate_table")
               : require_array(b_obj, "candidate_table");
  require_float_dtype(t.a, "anchor_table", writes);
  require_same_dtype(t.b, t.a, "candidate_table", "anchor_table", writes);
  for (const auto& [arr, name] : {std::pair{&t.a, "anchor_table"}, std::pair{&t.b, "candidate_table"}})
    if (arr->ndim() < 1)
      throw py::value_error(std::string(name) +
                            " must have at least one dimension (num_rows, *row_shape), got a 0-d array");
  bool same = t.a.ndim() == t.b.ndim();
  for (py::ssize_t d = 1; same && d < t.a.ndim(); ++d) same = t.a.shape(d) == t.b.shape(d);
  if (!same)
    throw py::value_error("candidate_table must have anchor_table's row shape (shape[1:]); got "
                          "anchor_table " + shape_str(t.a) + " and candidate_table " +
                          shape_str(t.b));
  return t;
}

// anchors (n,), candidates (n, k) of one index dtype, labels (n, k) of the tables' dtype or None.
struct SampledArrays {
  py::array anchors, candidates, labels;
  bool has_labels = false;
};

SampledArrays require_batch(py::handle anchors_obj, py::handle candidates_obj,
                            py::handle labels_obj, const py::array& table) {
  SampledArrays s{require_array(anchors_obj, "anchors"), require_array(candidates_obj, "candidates"),
                  py::array(), !labels_obj.is_none()};
  require_index_dtype(s.anchors, "anchors");
  if (s.anchors.ndim() != 1)
    throw py::value_error("anchors must be 1-D (one anchor row per item), got shape " +
                          shape_str(s.anchors));
  require_index_dtype(s.candidates, "candidates");
  if (has_dtype<std::int32_t>(s.candidates) != has_dtype<std::int32_t>(s.anchors))
    throw py::type_error("candidates must have the dtype of anchors (" + dtype_name(s.anchors) +
                         "), got " + dtype_name(s.candidates) + "; pass candidates.astype(anchors.dtype)");
  const py::ssize_t n = s.anchors.shape(0);
  if (s.candidates.ndim() != 2 || s.candidates.shape(0) != n)
    throw py::value_error("candidates must have shape (len(anchors), k) = (" + std::to_string(n) +
                          ", k), got " + shape_str(s.candidates) +
                          "; for one candidate per anchor pass candidates.reshape(-1, 1)");
  if (s.has_labels) {
    s.labels = require_array(labels_obj, "labels");
    require_same_dtype(s.labels, table, "labels", "anchor_table");
    if (s.labels.ndim() != 2 || s.labels.shape(0) != n ||
        s.labels.shape(1) != s.candidates.shape(1))
      throw py::value_error("labels must have the shape of candidates " +
                            shape_str(s.candidates) + ", got " + shape_str(s.labels));
  }
  return s;
}

template <class T, class I>
SampledBatch<T, I> batch_of(const SampledArrays& s) {
  SampledBatch<T, I> batch;
  batch.anchors = static_cast<const I*>(s.anchors.data());
  batch.candidates = static_cast<const I*>(s.candidates.data());
  batch.labels = s.has_labels ? static_cast<const T*>(s.labels.data()) : nullptr;
  batch.size = s.anchors.shape(0);
  batch.num_candidates = s.candidates.shape(1);
  return batch;
}

template <class T>
Table<const T> read_only_table_of(const py::array& a) {
  std::int64_t width = 1;
  for (py::ssize_t d = 1; d < a.ndim(); ++d) width *= a.shape(d);
  return Table<const T>{static_cast<const T*>(a.data()), a.shape(0), width};
}

// Checks the tables and the batch, then calls f(arrays, table_a, table_b, batch, value_tag,
// index_tag) with the GIL held (f releases it around the kernel). The tables are Table<T> for a
// kernel that writes them (Writes), else Table<const T> (read-only arrays welcome).
template <bool Writes, class F>
decltype(auto) with_batch(py::handle a_obj, py::handle b_obj, py::handle anchors,
                          py::handle candidates, py::handle labels, F&& f) {
  const SampledTables t = require_tables(a_obj, b_obj, Writes);
  const SampledArrays s = require_batch(anchors, candidates, labels, t.a);
  return dispatch(t.a, s.anchors, [&](auto value_tag, auto index_tag) -> decltype(auto) {
    using T = typename decltype(value_tag)::type;
    using I = typename decltype(index_tag)::type;
    if constexpr (Writes) {
      py::array a = t.a, b = t.b;  // table_of takes the (checked, writeable) array by reference
      return f(t, table_of<T>(a), table_of<T>(b), batch_of<T, I>(s), value_tag, index_tag);
    } else {
      return f(t, read_only_table_of<T>(t.a), read_only_table_of<T>(t.b), batch_of<T, I>(s),
               value_tag, index_tag);
    }
  });
}

double loss(py::handle a, py::handle b, py::handle anchors, py::handle candidates,
            py::handle labels, int num_threads) {
  detail::resolve_threads(num_threads);
  return with_batch<false>(a, b, anchors, candidates, labels,
                           [&](const SampledTables&, auto ta, auto tb, auto batch, auto, auto) {
                             py::gil_scoped_release release;
                             return sampled_logistic_loss(ta, tb, batch, num_threads);
                           });
}

// (loss, anchor_rows, anchor_grad, candidate_rows, candidate_grad); the outputs are allocated
// once the row counts are known, between the two GIL-free halves.
py::tuple grad(py::handle a_obj, py::handle b_obj, py::handle anchors, py::handle candidates,
               py::handle labels, int num_threads) {
  detail::resolve_threads(num_threads);
  return with_batch<false>(a_obj, b_obj, anchors, candidates, labels,
                           [&](const SampledTables& t, auto ta, auto tb, auto batch,
                               auto value_tag, auto index_tag) -> py::tuple {
    using T = typename decltype(value_tag)::type;
    using I = typename decltype(index_tag)::type;
    SampledLogisticGrad<T, I> g;
    double total;
    {
      py::gil_scoped_release release;
      total = g.compute(ta, tb, batch, num_threads);
    }
    auto shape_with = [](const py::array& table, std::int64_t rows) {
      std::vector<py::ssize_t> shape(table.shape(), table.shape() + table.ndim());
      shape[0] = rows;
      return shape;
    };
    py::array_t<I> anchor_rows(g.anchor_rows()), candidate_rows(g.candidate_rows());
    py::array_t<T> anchor_grad(shape_with(t.a, g.anchor_rows()));
    py::array_t<T> candidate_grad(shape_with(t.b, g.candidate_rows()));
    {
      py::gil_scoped_release release;
      g.write(anchor_rows.mutable_data(), anchor_grad.mutable_data(),
              candidate_rows.mutable_data(), candidate_grad.mutable_data(), num_threads);
    }
    return py::make_tuple(total, anchor_rows, anchor_grad, candidate_rows, candidate_grad);
  });
}

double sgd(py::handle a, py::handle b, py::handle anchors, py::handle candidates,
           py::handle labels, double lr, bool compute_loss) {
  return with_batch<true>(a, b, anchors, candidates, labels,
                          [&](const SampledTables&, auto ta, auto tb, auto batch, auto, auto) {
                            py::gil_scoped_release release;
                            return sampled_logistic_sgd(ta, tb, batch, lr, compute_loss);
                          });
}

AliasTable make_alias_table(py::handle weights_obj) {
  py::array w = require_array(weights_obj, "weights");
  if (!has_dtype<double>(w))
    throw py::type_error("weights must have dtype float64, got " + dtype_name(w) +
                         "; pass weights.astype(np.float64)");
  if (w.ndim() != 1) throw py::value_error("weights must be 1-D, got shape " + shape_str(w));
  const double* data = static_cast<const double*>(w.data());
  const std::int64_t n = w.shape(0);
  py::gil_scoped_release release;
  return AliasTable(data, n);
}

py::array draw(const AliasTable& table, py::handle positives_obj, std::int64_t num_negatives,
               std::uint64_t seed, bool exclude_positive, int num_threads) {
  detail::resolve_threads(num_threads);
  if (num_negatives < 0)
    throw py::value_error("num_negatives must be >= 0, got " + std::to_string(num_negatives));
  py::array positives = require_array(positives_obj, "positives");
  require_index_dtype(positives, "positives");
  if (positives.ndim() != 1)
    throw py::value_error("positives must be 1-D, got shape " + shape_str(positives));
  return dispatch_index(positives, [&](auto index_tag) -> py::array {
    using I = typename decltype(index_tag)::type;
    const std::int64_t n = positives.shape(0);
    const I* p = static_cast<const I*>(positives.data());
    detail::check_rows(p, n, table.size(), "positives", "the sampler's table");  // before allocating
    detail::require_draw_size(n, num_negatives, sizeof(I));  // before allocating
    py::array_t<I> out({py::ssize_t(n), py::ssize_t(1 + num_negatives)});
    I* o = out.mutable_data();
    {
      py::gil_scoped_release release;  // the result is returned below, with the GIL held
      draw_negatives(table, p, n, num_negatives, seed, exclude_positive, o, num_threads);
    }
    return out;
  });
}

py::tuple pairs(py::handle tokens_obj, py::handle offsets_obj, std::int64_t window,
                py::handle keep_obj, std::uint64_t seed, bool shrink_window) {
  ContextOptions options;
  options.window = window;
  options.seed = seed;
  options.shrink_window = shrink_window;
  options.validate();
  py::array tokens = require_array(tokens_obj, "tokens");
  require_index_dtype(tokens, "tokens");
  if (tokens.ndim() != 1) throw py::value_error("tokens must be 1-D, got shape " + shape_str(tokens));
  const std::int64_t* offsets = nullptr;
  std::int64_t num_sentences = 0;
  py::array offsets_arr, keep_arr;
  if (!offsets_obj.is_none()) {
    offsets_arr = require_array(offsets_obj, "offsets");
    if (!has_dtype<std::int64_t>(offsets_arr))
      throw py::type_error("offsets must have dtype int64, got " + dtype_name(offsets_arr) +
                           "; pass offsets.astype(np.int64)");
    if (offsets_arr.ndim() != 1 || offsets_arr.shape(0) < 1)
      throw py::value_error("offsets must be 1-D with at least one value (num_sentences + 1), "
                            "got shape " + shape_str(offsets_arr));
    offsets = static_cast<const std::int64_t*>(offsets_arr.data());
    num_sentences = offsets_arr.shape(0) - 1;
  }
  const double* keep = nullptr;
  std::int64_t vocab_size = 0;
  if (!keep_obj.is_none()) {
    keep_arr = require_array(keep_obj, "keep_probability");
    if (!has_dtype<double>(keep_arr))
      throw py::type_error("keep_probability must have dtype float64, got " +
                           dtype_name(keep_arr) + "; pass keep_probability.astype(np.float64)");
    if (keep_arr.ndim() != 1)
      throw py::value_error("keep_probability must be 1-D (one value per token id), got shape " +
                            shape_str(keep_arr));
    keep = static_cast<const double*>(keep_arr.data());
    vocab_size = keep_arr.shape(0);
  }
  return dispatch_index(tokens, [&](auto index_tag) -> py::tuple {
    using I = typename decltype(index_tag)::type;
    std::vector<I> centers, contexts;
    {
      py::gil_scoped_release release;
      context_pairs(static_cast<const I*>(tokens.data()), tokens.shape(0), offsets, num_sentences,
                    keep, vocab_size, options, centers, contexts);
    }
    py::array_t<I> c(py::ssize_t(centers.size())), x(py::ssize_t(contexts.size()));
    std::copy(centers.begin(), centers.end(), c.mutable_data());
    std::copy(contexts.begin(), contexts.end(), x.mutable_data());
    return py::make_tuple(c, x);
  });
}

py::array_t<double> vector_array(const std::vector<double>& v) {
  return py::array_t<double>(py::ssize_t(v.size()), v.data());
}

}  // namespace

void bind_sampled(py::module_& m) {
  m.def("sampled_logistic_loss", &loss, py::arg("anchor_table"), py::arg("candidate_table"),
        py::arg("anchors"), py::arg("candidates"), py::arg("labels"), py::arg("num_threads"));
  m.def("sampled_logistic_grad", &grad, py::arg("anchor_table"), py::arg("candidate_table"),
        py::arg("anchors"), py::arg("candidates"), py::arg("labels"), py::arg("num_threads"));
  m.def("sampled_logistic_sgd", &sgd, py::arg("anchor_table"), py::arg("candidate_table"),
        py::arg("anchors"), py::arg("candidates"), py::arg("labels"), py::arg("lr"),
        py::arg("compute_loss"));
  m.def("context_pairs", &pairs, py::arg("tokens"), py::arg("offsets"), py::arg("window"),
        py::arg("keep_probability"), py::arg("seed"), py::arg("shrink_window"));

  py::class_<AliasTable>(m, "AliasTable")
      .def(py::init(&make_alias_table), py::arg("weights"))
      .def_property_readonly("size", &AliasTable::size)
      .def_property_readonly("weights", [](const AliasTable& t) { return vector_array(t.weights()); })
      .def_property_readonly("probabilities",
                             [](const AliasTable& t) {
                               py::array_t<double> out(t.size());
                               for (std::int64_t i = 0; i < t.size(); ++i) out.mutable_data()[i] = t.probability(i);
                               return out;
                             })
      .def_property_readonly("aliases", [](const AliasTable& t) {
        py::array_t<std::int64_t> out(t.size());
        for (std::int64_t i = 0; i < t.size(); ++i) out.mutable_data()[i] = t.alias(i);
        return out;
      })
      .def("draw", &draw, py::arg("positives"), py::arg("num_negatives"), py::arg("seed"),
           py::arg("exclude_positive"), py::arg("num_threads"))
      .def(py::pickle(
          [](const AliasTable& t) { return py::make_tuple(vector_array(t.weights())); },
          [](const py::tuple& state) {
            if (state.size() != 1) throw py::value_error("AliasTable: bad pickled state");
            return make_alias_table(state[0]);
          }));
}

}  // namespace sparseopt::bind
