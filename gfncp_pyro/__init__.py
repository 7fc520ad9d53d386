"""gfncp-pyro: order-consistent amortized Bayesian clustering (GFNCP, NCP) for Pyro.

The names a user needs, importable from the package root::

    import gfncp_pyro

    guide = gfncp_pyro.GFNCPGuide.from_pretrained("mog2d-small")
    result = gfncp_pyro.importance(guide.model, guide, x, num_samples=1000)

They are imported on first use (``import gfncp_pyro`` itself loads neither torch nor Pyro).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> module that defines it (imported lazily, PEP 562).
_EXPORTS = {
    "AmortizedPartition": "gfncp_pyro.distributions",
    "CRPMixture": "gfncp_pyro.models",
    "CollapsedGibbs": "gfncp_pyro.mcmc",
    "ChineseRestaurantProcess": "gfncp_pyro.distributions",
    "EnergyNet": "gfncp_pyro.nn",
    "GFNCPGuide": "gfncp_pyro.guides",
    "GibbsResult": "gfncp_pyro.mcmc",
    "GaussianMixtureMarginal": "gfncp_pyro.distributions",
    "ImportanceResult": "gfncp_pyro.infer",
    "LowESSWarning": "gfncp_pyro.infer",
    "MHResult": "gfncp_pyro.infer",
    "ModelMismatchError": "gfncp_pyro.loading",
    "PartitionTable": "gfncp_pyro.infer",
    "co_clustering": "gfncp_pyro.metrics",
    "collapsed_gibbs": "gfncp_pyro.mcmc",
    "collapsed_log_joint": "gfncp_pyro.infer",
    "exact_posterior": "gfncp_pyro.exact",
    "fit": "gfncp_pyro.infer",
    "importance": "gfncp_pyro.infer",
    "independence_mh": "gfncp_pyro.infer",
    "load_pretrained": "gfncp_pyro.loading",
    "map_partition": "gfncp_pyro.infer",
    "model_for": "gfncp_pyro.loading",
    "posterior_table": "gfncp_pyro.infer",
    "reward_posterior": "gfncp_pyro.reward",
    "sdpp": "gfncp_pyro.metrics",
    "subset_posterior": "gfncp_pyro.subset_dp",
    "total_variation": "gfncp_pyro.metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gfncp_pyro' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
