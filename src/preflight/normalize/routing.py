"""scikit-learn's metadata routing for a transformer with sample weights, without importing scikit-learn until asked.

With ``sklearn.set_config(enable_metadata_routing=True)`` a Pipeline, GridSearchCV or cross_validate passes
``sample_weight`` only to the steps that asked for it: ``Standardizer().set_fit_request(sample_weight=True)``, as
with StandardScaler. The choices are kept on the estimator (so ``clone`` copies them) and turned into scikit-learn's
``MetadataRequest`` when scikit-learn asks (``get_metadata_routing``); routing cannot be on unless scikit-learn
was imported.
"""

from __future__ import annotations

import sys
from typing import Any, Self

__all__ = ["ROUTED", "MetadataRequests", "RequestChoices"]

#: The metadata each method takes, as StandardScaler's requests list them.
ROUTED: dict[str, tuple[str, ...]] = {
    "fit": ("sample_weight",),
    "partial_fit": ("sample_weight",),
    "transform": ("copy",),
    "inverse_transform": ("copy",),
}
#: scikit-learn's marker for "leave this request as it is" (``sklearn.utils.metadata_routing.UNCHANGED``).
UNCHANGED = "$UNCHANGED$"


class RequestChoices(dict[str, dict[str, Any]]):
    """The choices made, per method: kept where scikit-learn's ``clone`` copies them (``_metadata_request``)."""

    def __sklearn_clone__(self) -> RequestChoices:
        return RequestChoices({method: dict(params) for method, params in self.items()})


def _routing_enabled() -> bool:
    sklearn = sys.modules.get("sklearn")
    return bool(sklearn is not None and sklearn.get_config().get("enable_metadata_routing", False))


class MetadataRequests:
    """Mixin: ``set_{fit,partial_fit,transform,inverse_transform}_request`` and ``get_metadata_routing``."""

    def _set_request(self, method: str, **requests: Any) -> Self:
        if not _routing_enabled():
            raise RuntimeError(
                "This method is only available when metadata routing is enabled. You can enable it using "
                "sklearn.set_config(enable_metadata_routing=True)."
            )
        chosen = {k: v for k, v in requests.items() if v is not UNCHANGED and v != UNCHANGED}
        for name, value in chosen.items():
            if not (value is None or isinstance(value, (bool, str))):
                raise ValueError(
                    f"set_{method}_request: {name} must be True, False, None or an alias (a str); got {value!r}"
                )
        stored = RequestChoices(getattr(self, "_metadata_request", {}))
        stored[method] = {**stored.get(method, {}), **chosen}
        self._metadata_request = stored
        return self

    def set_fit_request(self, *, sample_weight: bool | str | None = UNCHANGED) -> Self:
        """Whether ``fit`` asks for ``sample_weight`` under metadata routing (True, False, None or an alias)."""
        return self._set_request("fit", sample_weight=sample_weight)

    def set_partial_fit_request(self, *, sample_weight: bool | str | None = UNCHANGED) -> Self:
        """Whether ``partial_fit`` asks for ``sample_weight`` under metadata routing."""
        return self._set_request("partial_fit", sample_weight=sample_weight)

    def set_transform_request(self, *, copy: bool | str | None = UNCHANGED) -> Self:
        """Whether ``transform`` asks for ``copy`` under metadata routing."""
        return self._set_request("transform", copy=copy)

    def set_inverse_transform_request(self, *, copy: bool | str | None = UNCHANGED) -> Self:
        """Whether ``inverse_transform`` asks for ``copy`` under metadata routing."""
        return self._set_request("inverse_transform", copy=copy)

    def get_metadata_routing(self) -> Any:
        """scikit-learn's ``MetadataRequest`` for this estimator (only scikit-learn calls this, so it may import it)."""
        from sklearn.utils.metadata_routing import MetadataRequest

        request = MetadataRequest(owner=self)
        chosen = getattr(self, "_metadata_request", {})
        for method, params in ROUTED.items():
            for param in params:
                getattr(request, method).add_request(param=param, alias=chosen.get(method, {}).get(param))
        return request
