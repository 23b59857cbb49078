"""What a sampled check proved about a tensor: the chance it would have caught an error on a share of its elements."""

from __future__ import annotations

import math

__all__ = ["BROKEN_SHARE", "detection_probability"]

#: The share of a tensor's elements an error is assumed to affect in the per-tensor guarantee of a sampled check.
BROKEN_SHARE = 0.01


def detection_probability(size: int, checked: int, share: float = BROKEN_SHARE) -> float:
    """The chance that ``checked`` coordinates drawn without replacement from ``size`` include a broken one.

    The exact hypergeometric form: with ``b = ceil(share * size)`` broken elements (at least one),
    ``P = 1 - C(size - b, checked) / C(size, checked)``, which is 1 once ``checked > size - b`` and tends to the
    binomial ``1 - (1 - share) ** checked`` for a large tensor. It assumes each broken coordinate, once checked, is
    caught (its error is above the check's tolerance) and that the sample is uniform over the tensor, as
    ``gradcheck(sample=...)`` draws it (every tensor sampled, kinks set aside not counted).

    Parameters
    ----------
    size : int
        Elements of the tensor.
    checked : int
        Coordinates of it judged.
    share : float
        The share of elements the error affects, in (0, 1].

    Returns
    -------
    float
        In [0, 1]; 0 when nothing was checked.

    Examples
    --------
    >>> round(detection_probability(1_000_000, 300), 3)  # close to 1 - 0.99 ** 300
    0.951
    >>> detection_probability(50, 50)
    1.0
    """
    if size <= 0 or checked <= 0:
        return 0.0
    broken = max(1, math.ceil(share * size))
    if checked > size - broken:
        return 1.0
    log_miss = (
        math.lgamma(size - broken + 1)
        - math.lgamma(size - broken - checked + 1)
        - math.lgamma(size + 1)
        + math.lgamma(size - checked + 1)
    )
    return 1.0 - math.exp(log_miss)
