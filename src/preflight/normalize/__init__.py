"""Input normalization: :class:`Standardizer` (mean and standard deviation fitted on the training set only, reused
everywhere after), exact moments, sample weights, sparse input, output containers, sources (arrays, chunks, files,
dask) and the PyTorch layer."""

from __future__ import annotations

from preflight.normalize.errors import ConstantFeatureWarning, NotFittedError
from preflight.normalize.standardizer import Standardizer

__all__ = ["ConstantFeatureWarning", "NotFittedError", "Standardizer"]
