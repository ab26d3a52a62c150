"""Sobolev training of implicit neural representations (Yuan et al., ECCV 2022).

Plain PyTorch + kornia: models, derivative targets, sampling, losses, metrics and the
trainers of the paper's tasks.  No Ray or MLflow here; runners call these through the
trainers' callback hook.
"""

__version__ = "0.1.0"
