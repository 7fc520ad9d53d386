"""Training-set generators: set sizes, orders, exploration partitions (and, later, image sets)."""

from .sets import exploration_mask, random_lengths, random_orders, with_exploration

__all__ = ["exploration_mask", "random_lengths", "random_orders", "with_exploration"]
