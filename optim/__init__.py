"""The two sides of the flexibility market (DSO, TSO), validation, and paper B's ML-based OPF."""

import os

# As in gridgen/__init__.py (the reason and the measurement are there): pandapower's numba helpers
# run in Python unless NUMBA_DISABLE_JIT=0. Set here too, for code that imports optim before
# gridgen: with the pinned numba 0.68 the jit of pandapower 3.5's trafo helpers fails to type
# ("'function' object has no attribute 'get_call_template'", tests/unit/test_dso_sensitivity.py alone).
os.environ.setdefault("NUMBA_DISABLE_JIT", "1")
