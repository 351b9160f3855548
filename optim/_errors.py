"""Exceptions of the optimisation layer; the CLI and the app map them to one-line messages.

The first line of ``str(error)`` says what is wrong and what to do; ``details`` holds up to a few
further lines (e.g. one per bad row of a bid file) that a front end may show below it.
"""

from __future__ import annotations


class OptimError(Exception):
    """Base class of all optim errors.

    Attributes
    ----------
    details : tuple of str
        Further lines that explain the first one (empty for most errors).
    """

    details: tuple[str, ...] = ()


class InputError(OptimError, ValueError):
    """Input data (bids, package, request, arrays) is invalid: NaN, wrong shape, wrong columns."""


class LimitError(InputError):
    """Input beyond a documented limit (file size, rows, JSON nesting, operating points, samples)."""


class PowerFlowError(OptimError, RuntimeError):
    """An AC power flow did not converge."""


class SolverError(OptimError, RuntimeError):
    """A solver failed for a reason other than infeasibility."""
