"""ddnn: nonlinear domain-decomposition and multilevel optimisers for training neural networks.

Run as an SPMD program (``mpirun -n 8 python -m ddnn input.yaml``) or use the
optimisers from your own PyTorch code (:mod:`ddnn.optim`).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
