"""Type stubs for ``sparseopt._core``, the compiled pybind11 module.

The module is private: use the ``sparseopt`` package, whose functions and optimizers validate
their arguments, set defaults and allocate outputs before they call these. Arrays are taken
without conversion (C-contiguous, the documented dtype), so every ``np.ndarray`` below is one
the kernel reads or writes in place. Drafted from the module's own signatures
(``help(sparseopt._core)``); tests/test_packaging.py checks that it lists every name the
module has.
"""

from typing import Any, ClassVar, type_check_only

import numpy as np
import numpy.typing as npt

__version__: str
max_num_threads: int

@type_check_only
class _Enum:
    """What the module's two pybind11 enums share (a stub-only base)."""
    def __init__(self, value: int) -> None: ...
    def __int__(self) -> int: ...
    def __index__(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

class AdagradOptions:
    def __init__(self) -> None: ...
    eps: float
    lr: float
    lr_decay: float
    def validate(self) -> None: ...

class AdamOptions:
    def __init__(self) -> None: ...
    amsgrad: bool
    beta1: float
    beta2: float
    bias_correction: BiasCorrection
    decoupled: bool
    eps: float
    def exact_layout(self) -> tuple[int, int, int]: ...
    lr: float
    mode: Mode
    def validate(self) -> None: ...
    weight_decay: float

class AliasTable:
    def __init__(self, weights: np.ndarray | None) -> None: ...
    @property
    def aliases(self) -> npt.NDArray[np.int64]: ...
    def draw(self, positives: np.ndarray, num_negatives: int, seed: int, exclude_positive: bool,
             num_threads: int) -> np.ndarray: ...
    @property
    def probabilities(self) -> npt.NDArray[np.float64]: ...
    @property
    def size(self) -> int: ...
    @property
    def weights(self) -> npt.NDArray[np.float64]: ...

class BiasCorrection(_Enum):
    __members__: ClassVar[dict[str, BiasCorrection]]
    global_: ClassVar[BiasCorrection]
    row: ClassVar[BiasCorrection]
    none: ClassVar[BiasCorrection]

class FtrlOptions:
    def __init__(self) -> None: ...
    initial_accumulator_value: float
    l1: float
    l2: float
    lr: float
    lr_power: float
    def validate(self) -> None: ...

class Mode(_Enum):
    __members__: ClassVar[dict[str, Mode]]
    lazy: ClassVar[Mode]
    exact: ClassVar[Mode]

class RmspropOptions:
    def __init__(self) -> None: ...
    alpha: float
    centered: bool
    eps: float
    def exact_layout(self) -> tuple[int, int, int]: ...
    lr: float
    mode: Mode
    momentum: float
    def validate(self) -> None: ...

class RowWiseAdagradOptions:
    def __init__(self) -> None: ...
    eps: float
    lr: float
    def validate(self) -> None: ...

class SgdOptions:
    def __init__(self) -> None: ...
    dampening: float
    def exact_layout(self) -> tuple[int, int, int]: ...
    lr: float
    mode: Mode
    momentum: float
    nesterov: bool
    def validate(self) -> None: ...
    weight_decay: float

def _set_gather_layout(layout: str) -> None: ...
def _set_simd_path(path: str) -> str: ...
def adagrad_step(param: np.ndarray, indices: np.ndarray, values: np.ndarray,
                 bags: tuple[np.ndarray, np.ndarray | None, bool] | None, sum: np.ndarray,
                 options: AdagradOptions, step: int, num_threads: int,
    rounding: tuple[str, int] | None = None) -> None: ...
def adam_flush(param: np.ndarray, indices: np.ndarray | None, exp_avg: np.ndarray,
               exp_avg_sq: np.ndarray, max_exp_avg_sq: np.ndarray | None,
               last_step: np.ndarray | None, history: np.ndarray | None, window: np.ndarray | None,
               history_start: np.ndarray | None, options: AdamOptions, step: int, num_threads: int,
    rounding: tuple[str, int] | None = None) -> None: ...
def adam_step(param: np.ndarray, indices: np.ndarray, values: np.ndarray,
              bags: tuple[np.ndarray, np.ndarray | None, bool] | None, exp_avg: np.ndarray,
              exp_avg_sq: np.ndarray, max_exp_avg_sq: np.ndarray | None,
              row_steps: np.ndarray | None, last_step: np.ndarray | None,
              history: np.ndarray | None, window: np.ndarray | None,
              history_start: np.ndarray | None, options: AdamOptions, step: int, num_threads: int,
    rounding: tuple[str, int] | None = None) -> None: ...
def build_info() -> dict[str, Any]: ...
def check_param(param: np.ndarray) -> None: ...
def clip_grad_norm(grads: list[Any], max_norm: float, ord: float, error_if_nonfinite: bool,
                   num_threads: int) -> float: ...
def coalesce(indices: np.ndarray, values: np.ndarray, num_rows: int | None, num_threads: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
def context_pairs(tokens: np.ndarray, offsets: np.ndarray, window: int,
                  keep_probability: np.ndarray | None, seed: int, shrink_window: bool
                  ) -> tuple[np.ndarray, np.ndarray]: ...
def csr_matmul(table: np.ndarray, x_rows: int, x_cols: int, indptr: np.ndarray, indices: np.ndarray,
               data: np.ndarray, out: np.ndarray | None, num_threads: int) -> np.ndarray: ...
def csr_matmul_backward(grad_out: np.ndarray, x_rows: int, x_cols: int, indptr: np.ndarray,
                        indices: np.ndarray, data: np.ndarray, num_threads: int
                        ) -> tuple[np.ndarray, np.ndarray]: ...
def ftrl_check_options(param: np.ndarray, options: FtrlOptions) -> None: ...
def rowwise_adagrad_check_options(param: np.ndarray, options: RowWiseAdagradOptions) -> None: ...
def ftrl_step(param: np.ndarray, indices: np.ndarray, values: np.ndarray,
              bags: tuple[np.ndarray, np.ndarray | None, bool] | None, accumulator: np.ndarray,
              linear: np.ndarray, options: FtrlOptions, num_threads: int,
    rounding: tuple[str, int] | None = None, step: int = 0) -> None: ...
def gather_sum(table: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
               weights: np.ndarray | None, mean: bool, out: np.ndarray | None, num_threads: int
               ) -> np.ndarray: ...
def gather_sum_backward(grad_out: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                        weights: np.ndarray | None, mean: bool, num_rows: int, num_threads: int
                        ) -> tuple[np.ndarray, np.ndarray]: ...
def grad_norm(grads: list[Any], ord: float, num_threads: int) -> float: ...
def meprop_linear_backward(x: np.ndarray, weight: np.ndarray, grad_out: np.ndarray, k: int,
                           unified: bool, need_grad_x: bool, num_threads: int
                           ) -> tuple[Any, ...]: ...
def rmsprop_flush(param: np.ndarray, indices: np.ndarray | None, square_avg: np.ndarray,
                  momentum_buffer: np.ndarray | None, grad_avg: np.ndarray | None,
                  last_step: np.ndarray | None, history: np.ndarray | None,
                  window: np.ndarray | None, history_start: np.ndarray | None,
                  options: RmspropOptions, step: int, num_threads: int,
    rounding: tuple[str, int] | None = None) -> None: ...
def rmsprop_step(param: np.ndarray, indices: np.ndarray, values: np.ndarray,
                 bags: tuple[np.ndarray, np.ndarray | None, bool] | None, square_avg: np.ndarray,
                 momentum_buffer: np.ndarray | None, grad_avg: np.ndarray | None,
                 last_step: np.ndarray | None, history: np.ndarray | None,
                 window: np.ndarray | None, history_start: np.ndarray | None,
                 options: RmspropOptions, step: int, num_threads: int,
    rounding: tuple[str, int] | None = None) -> None: ...
def rowwise_adagrad_step(param: np.ndarray, indices: np.ndarray, values: np.ndarray,
                         bags: tuple[np.ndarray, np.ndarray | None, bool] | None,
                         sum: np.ndarray, options: RowWiseAdagradOptions, num_threads: int,
    rounding: tuple[str, int] | None = None, step: int = 0) -> None: ...
def sampled_logistic_grad(anchor_table: np.ndarray, candidate_table: np.ndarray,
                          anchors: np.ndarray, candidates: np.ndarray, labels: np.ndarray | None,
                          num_threads: int) -> tuple[Any, ...]: ...
def sampled_logistic_loss(anchor_table: np.ndarray, candidate_table: np.ndarray,
                          anchors: np.ndarray, candidates: np.ndarray, labels: np.ndarray | None,
                          num_threads: int) -> float: ...
def sampled_logistic_sgd(anchor_table: np.ndarray, candidate_table: np.ndarray, anchors: np.ndarray,
                         candidates: np.ndarray, labels: np.ndarray | None, lr: float,
                         compute_loss: bool) -> float: ...
def sgd_flush(param: np.ndarray, indices: np.ndarray | None, momentum_buffer: np.ndarray | None,
              last_step: np.ndarray | None, history: np.ndarray | None, window: np.ndarray | None,
              history_start: np.ndarray | None, options: SgdOptions, step: int, num_threads: int,
    rounding: tuple[str, int] | None = None) -> None: ...
def sgd_step(param: np.ndarray, indices: np.ndarray, values: np.ndarray,
             bags: tuple[np.ndarray, np.ndarray | None, bool] | None,
             momentum_buffer: np.ndarray | None, row_steps: np.ndarray | None,
             last_step: np.ndarray | None, history: np.ndarray | None, window: np.ndarray | None,
             history_start: np.ndarray | None, options: SgdOptions, step: int, num_threads: int,
    rounding: tuple[str, int] | None = None) -> None: ...
def topk(x: np.ndarray, k: int, largest: bool, magnitude: bool, sorted: bool, num_threads: int
         ) -> tuple[np.ndarray, np.ndarray]: ...
# Half-precision (float16 / bfloat16) conversions: bind_half.cpp. The optimizer steps take half
# tables (float32 values, `rounding` = (rounding, seed)) through their own functions above.
def round_to_half(values: np.ndarray, out: np.ndarray, rounding: str, seed: int = 0, step: int = 0
                  ) -> None: ...
def widen_half(values: np.ndarray, out: np.ndarray) -> None: ...
