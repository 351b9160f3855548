"""DSO side of paper A: scenario, operating points and sensitivities. Has the grid."""

#: Bisection of ``merit-levels`` (:mod:`optim.dso.points`) as ``digiplat linearize``, ``digiplat clear``
#: and the app run it: up to 33 points, intervals bisected above 2 x paper A's Table I errors. Here,
#: not in ``points``, so the CLI's parser reads them without importing numpy.
DEFAULT_MAX_POINTS = 33
DEFAULT_POINT_GAP = 2.0
