// sparseopt: sparse-gradient optimizers for parameter tables, header-only C++17.
//
//   #include <sparseopt/sparseopt.hpp>
//   sparseopt::Table<float> param{data, num_rows, row_width};
//   sparseopt::RowSparse<float, std::int64_t> grad{indices, values, n, row_width};
//   sparseopt::adam_step(param, grad, state, options, step);
//
// Link the CMake target sparseopt::sparseopt (it brings OpenMP when the package had it).
#pragma once

#include "config.hpp"
#include "errors.hpp"
#include "view.hpp"
#include "parallel.hpp"
#include "simd.hpp"
#include "coalesce.hpp"
#include "norm.hpp"
#include "gather.hpp"
#include "optim/rows.hpp"
#include "optim/common.hpp"
#include "optim/sgd.hpp"
#include "optim/adagrad.hpp"
#include "optim/exact.hpp"
#include "optim/adam.hpp"
#include "optim/rmsprop.hpp"
#include "optim/rowwise_adagrad.hpp"
#include "optim/ftrl.hpp"
#include "half.hpp"
#include "half_gather.hpp"
#include "half_topk.hpp"
#include "topk.hpp"
#include "meprop.hpp"
#include "sampling.hpp"
#include "sampled.hpp"
