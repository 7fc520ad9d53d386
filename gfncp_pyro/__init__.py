"""gfncp-pyro: order-consistent amortized Bayesian clustering (GFNCP, NCP) for Pyro."""

__version__ = "0.1.0"
