"""Distribution grid generator: OpenStreetMap -> 20 kV / 0.4 kV pandapower grid (paper A, III-A)."""

import os

OSM_CREDIT = "© OpenStreetMap contributors, ODbL 1.0"

# pandapower's power flow (numba=False) still jit-compiles three numba helpers that pick the
# in-service elements, on the first power flow of every process: 0.43 s of a 1.6 s Bergwald build
# and of every fresh CLI run, against 0.03 s per power flow for them in Python on the whole shared
# file (benchmarks/bench_grid.py). Set before numba is imported; NUMBA_DISABLE_JIT=0 keeps the jit.
os.environ.setdefault("NUMBA_DISABLE_JIT", "1")
