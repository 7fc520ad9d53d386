"""Pyro distributions: the CRP prior over partitions and the collapsed mixture likelihood."""

from .constraints import canonical_partition
from .crp import ChineseRestaurantProcess, sample_crp_labels
from .marginal import GaussianMixtureMarginal

__all__ = [
    "ChineseRestaurantProcess",
    "GaussianMixtureMarginal",
    "canonical_partition",
    "sample_crp_labels",
]
