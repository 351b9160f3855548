"""DSO side of paper A: scenario, operating points and sensitivities. Has the grid."""
