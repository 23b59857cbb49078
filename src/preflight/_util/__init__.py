"""Plumbing shared by every folder: atomic files, strict JSON, optional imports, progress bars, validation, warnings,
BLAS threads, type aliases, text tables and figures. Nothing here knows about networks or gradients."""
