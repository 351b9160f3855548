"""The two sides of the flexibility market (DSO, TSO), validation, and paper B's ML-based OPF."""
