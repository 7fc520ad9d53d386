"""The one batch type: a padded batch of sets with their partitions.

Every producer of sets returns a :class:`SetBatch` and fills the fields it knows: the Pyro
model's sampler the cluster ``means``, the image and embedding set builders each point's pool
index ``source``, the trainer the ``orders`` and the ``is_data`` flags of exploration sets.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["SetBatch"]


class SetBatch(NamedTuple):
    """``B`` sets padded to ``N_max`` points.

    :ivar x: points ``(B, N_max, *point_shape)``, zero at padding.
    :ivar labels: canonical labels ``(B, N_max)`` (``torch.long``), ``PAD_LABEL`` at padding (in
        a training batch, possibly an exploration partition, see ``is_data``).
    :ivar mask: ``(B, N_max)`` bool, ``True`` on the first ``N_b`` positions of row ``b``.
    :ivar orders: ``(B, N_max)`` the order in which each set is assigned (training batches).
    :ivar is_data: ``(B,)`` bool, ``True`` where ``labels`` is the data partition (training
        batches; ``False`` on exploration sets).
    :ivar means: cluster means ``(B, N_max, D)`` of sets drawn from the CRP mixture; slot ``k``
        is cluster ``k``, slots ``>= K`` are prior draws that no point uses.
    :ivar source: ``(B, N_max)`` long, the pool index of each point of an image or embedding set
        (of its anchor for an augmented point), ``-1`` at padding.
    """

    x: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor
    orders: torch.Tensor | None = None
    is_data: torch.Tensor | None = None
    means: torch.Tensor | None = None
    source: torch.Tensor | None = None

    @property
    def lengths(self) -> torch.Tensor:
        """Set sizes ``N_b`` ``(B,)``."""
        return self.mask.sum(1)
