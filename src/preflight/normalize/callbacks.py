"""scikit-learn's callbacks (``set_callbacks``, ``sklearn.callback``, experimental in 1.9) around a Standardizer's fit.

StandardScaler's ``fit`` and ``partial_fit`` are one task each: the callbacks' ``setup``, ``on_fit_task_begin``,
``on_fit_task_end`` and ``teardown`` hooks run once around it, and a meta-estimator (a Pipeline with a progress bar)
links its task tree with it. Standardizer does the same through scikit-learn's own machinery, imported only when
callbacks are set or a meta-estimator passed its context down: without scikit-learn neither can happen.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

__all__ = ["CallbackSupport", "fit_task"]


class CallbackSupport:
    """Mixin: ``set_callbacks``, scikit-learn's (``sklearn.callback.CallbackSupportMixin``)."""

    def set_callbacks(self, *callbacks: Any) -> Self:
        """Set scikit-learn callbacks (instances following ``sklearn.callback.FitCallback``); none clears them.

        Examples
        --------
        >>> from preflight import Standardizer
        >>> hasattr(Standardizer().set_callbacks(), "_skl_callbacks")
        False
        """
        if not callbacks:
            self.__dict__.pop("_skl_callbacks", None)
            return self
        from sklearn.callback import CallbackSupportMixin

        CallbackSupportMixin.set_callbacks(self, *callbacks)  # its checks, its attribute (_skl_callbacks)
        return self


@contextmanager
def fit_task(estimator: Any, X: Any, y: Any, sample_weight: Any) -> Iterator[None]:
    """Run the body as one fit task of scikit-learn's callbacks, when any are set or a meta-estimator's context is.

    Examples
    --------
    >>> from preflight import Standardizer
    >>> with fit_task(Standardizer(), None, None, None):  # nothing set: nothing imported, nothing called
    ...     pass
    """
    if not getattr(estimator, "_skl_callbacks", None) and not hasattr(estimator, "_parent_callback_ctx"):
        yield
        return
    from sklearn.callback import CallbackSupportMixin
    from sklearn.callback._callback_support import callback_management_context

    metadata = {"sample_weight": sample_weight}
    with callback_management_context(estimator):
        context = CallbackSupportMixin._init_callback_context(estimator)
        context.call_on_fit_task_begin(estimator=estimator, X=X, y=y, metadata=metadata)
        yield
        context.call_on_fit_task_end(estimator=estimator, X=X, y=y, metadata=metadata, reconstruction_attributes={})
