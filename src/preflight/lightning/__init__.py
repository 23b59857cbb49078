"""preflight for PyTorch Lightning: :class:`HealthCallback`, the training health monitor as a Lightning callback.

Imported on use only (``import preflight`` never imports Lightning); without Lightning installed, importing this
module raises :class:`preflight._util.optional.MissingExtraError` naming the extra ``lightning``.
"""

from __future__ import annotations

from preflight._util.optional import require

require("lightning", extra="lightning", purpose="preflight.lightning (the training health monitor for Lightning)")

from preflight.lightning.callback import HealthCallback  # noqa: E402

__all__ = ["HealthCallback"]
