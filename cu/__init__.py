"""cu: Contrastive Unlearning (Lee, Zhang, Yang, Lou, Xiong) and its baselines.

Modules, one idea each:
  runtime      seeds, devices, atomic files
  data         datasets in memory, unlearning splits, seeded batches
  models       CIFAR-stem ResNets with the paper's embedding head
  training     the one training loop, accuracy, the checkpoint cache
  losses       the contrastive unlearning loss (Eq. 5/6)
  unlearners   the registry of unlearning methods
  results      result records and tidy CSV files
  plots        figures
"""
from cu.runtime import get_device, set_seed

__all__ = ["get_device", "set_seed"]
__version__ = "0.1.0"
