"""Paper B: ML-based privacy-preserving AC-OPF (neural-network polytope, quadratic regression)."""
