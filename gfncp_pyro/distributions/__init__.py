"""Pyro distributions: the CRP prior over partitions, the collapsed mixture likelihood and the
amortized posterior ``q(c | x)`` of a trained network."""

from .amortized import AmortizedPartition
from .constraints import canonical_partition
from .crp import ChineseRestaurantProcess, sample_crp_labels
from .marginal import GaussianMixtureMarginal

__all__ = [
    "AmortizedPartition",
    "ChineseRestaurantProcess",
    "GaussianMixtureMarginal",
    "canonical_partition",
    "sample_crp_labels",
]
