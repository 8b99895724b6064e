"""Figure export: HTML always and self-contained; PNG and SVG through kaleido + Chromium."""
from __future__ import annotations

import os

import plotly.graph_objects as go
import pytest

from workbench.export import export_figure, image_export_unavailable


def _figure():
    return go.Figure(go.Scatter(x=[0.1, 1, 10], y=[1, 10, 50], name="points"))


def test_html_export_is_self_contained(tmp_path):
    path = export_figure(_figure(), tmp_path / "fig.html")
    text = path.read_text()
    assert "<script src=" not in text and "points" in text
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]   # no temporary files left


def test_unknown_suffix_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"\.html, \.png or \.svg"):
        export_figure(_figure(), tmp_path / "fig.jpg")


def test_png_and_svg_export_where_kaleido_and_chromium_are_available(tmp_path):
    reason = image_export_unavailable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"image export must work in CI: {reason}")
        pytest.skip(reason)
    png = export_figure(_figure(), tmp_path / "fig.png")
    svg = export_figure(_figure(), tmp_path / "fig.svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in svg.read_bytes()[:2000]
