"""TSO side of paper A: bids, BCM, MILP clearing, merit order. Sees only the SensitivityPackage.

Nothing in this package may import pandapower, gridgen or optim.dso (tests/unit/test_privacy.py).
"""
