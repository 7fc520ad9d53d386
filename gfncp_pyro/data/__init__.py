"""Training and test sets: set sizes, orders, exploration partitions (:mod:`.sets`); image and
embedding pools (:mod:`.images`, :mod:`.embeddings`, :mod:`.pools`); augmentations
(:mod:`.augment`); instance-discrimination and class sets (:mod:`.image_sets`); and the set
sources that training and evaluation draw from (:mod:`.sources`)."""

from .augment import EmbeddingAugment, ImageAugment, augment_embeddings, augment_images
from .embeddings import load_embeddings, save_embeddings
from .image_sets import class_sets, instance_sets
from .images import load_idx, load_image_npz, load_images
from .pools import LabeledPool, check_pool, class_split, index_split, parse_range
from .sets import exploration_mask, random_lengths, random_orders, with_exploration

__all__ = [
    "EmbeddingAugment", "ImageAugment", "augment_embeddings", "augment_images",
    "load_embeddings", "save_embeddings",
    "class_sets", "instance_sets",
    "load_idx", "load_image_npz", "load_images",
    "LabeledPool", "check_pool", "class_split", "index_split", "parse_range",
    "exploration_mask", "random_lengths", "random_orders", "with_exploration",
]
