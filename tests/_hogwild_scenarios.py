"""Parent processes for the shared-memory leak tests (test_hogwild_shm.py runs them):

    python _hogwild_scenarios.py SCENARIO BACKEND

Each allocates shared tables and an optimizer whose state is shared, prints
``NAMES <json list of its /dev/shm entries>``, then runs two workers:

normal     workers train and return; the script exits normally.
raise      worker 1 raises ValueError; uncaught in the parent.
exit       worker 1 calls os._exit(3); the WorkerError is uncaught.
kill       worker 1 kills itself with SIGKILL; the WorkerError is uncaught.
interrupt  workers print ``READY <pid> <rank>`` and run until the test interrupts the parent.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import sys

import numpy as np

from sparseopt import hogwild
from sparseopt.optim import Adagrad

import _hogwild_helpers as W


def own_segments() -> list[str]:
    return sorted(glob.glob(f"/dev/shm/sparseopt_{os.getpid()}_*"))


def main(scenario: str, backend: str) -> None:
    # A parent started in the background by a non-interactive shell inherits SIGINT ignored,
    # and Python then installs no KeyboardInterrupt handler: the interrupt tests would hang.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rng = np.random.default_rng(0)
    table = hogwild.share(rng.standard_normal((40, 4)).astype(np.float32))
    opt = Adagrad(table, lr=0.1).share_memory()
    extra = hogwild.zeros((8, 3))  # a block that only lives in a global, until exit
    globals()["extra"] = extra
    print("NAMES " + json.dumps(own_segments()), flush=True)
    if scenario == "normal":
        # worker r steps rows r, r + 2, ..., r + 8
        steps = [[((np.array([2 * k + r]), np.ones((1, 4), np.float32)),) for k in range(5)]
                 for r in range(2)]
        before = table.copy()
        hogwild.run(W.apply_steps, 2, backend=backend, args=((opt,),),
                    worker_args=[(s,) for s in steps])
        changed = np.any(table != before, axis=1)
        assert changed[:10].all() and not changed[10:].any(), changed
        print("DONE", flush=True)
    elif scenario == "raise":
        hogwild.run(W.raise_in, 2, backend=backend, args=(1, "scenario worker failed"))
    elif scenario in ("exit", "kill"):
        hogwild.run(W.exit_in, 2, backend=backend, args=(1, scenario))
    elif scenario == "interrupt":
        hogwild.run(W.run_forever, 2, backend=backend, args=(table,))
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
