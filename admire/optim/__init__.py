"""The optimiser: multi-fidelity GP (surrogate), cost-aware acquisition, cost model."""
