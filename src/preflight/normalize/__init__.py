"""Input normalization: :class:`Standardizer` (mean and standard deviation fitted on the training set only, reused
everywhere after), exact moments, sources (arrays, chunks, files, dask) and the PyTorch layer."""

from __future__ import annotations

from preflight.normalize.standardizer import ConstantFeatureWarning, NotFittedError, Standardizer

__all__ = ["ConstantFeatureWarning", "NotFittedError", "Standardizer"]
