"""Presenting results: plain-text tables, figures (matplotlib, extra ``plot``), and the HTML report."""
