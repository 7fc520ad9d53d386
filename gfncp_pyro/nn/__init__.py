"""Neural networks: point encoders, set functions and the energy network (Eqs. 12-15)."""

from .encoders import ConvEncoder, mlp
from .energy import EnergyNet, EnergyNetConfig, FusedHeads

__all__ = ["ConvEncoder", "EnergyNet", "EnergyNetConfig", "FusedHeads", "mlp"]
