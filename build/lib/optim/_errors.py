"""Exceptions of the optimisation layer; the CLI and the app map them to one-line messages."""


class OptimError(Exception):
    """Base class of all optim errors."""


class InputError(OptimError, ValueError):
    """Input data (bids, package, request, arrays) is invalid: NaN, wrong shape, wrong columns."""


class PowerFlowError(OptimError, RuntimeError):
    """An AC power flow did not converge."""


class SolverError(OptimError, RuntimeError):
    """A solver failed for a reason other than infeasibility."""
