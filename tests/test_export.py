"""Figure export: HTML always and self-contained; PNG and SVG through kaleido + Chromium."""
from __future__ import annotations

import os
import struct

import plotly.graph_objects as go
import pytest

from workbench.export import IMAGE_HEIGHT, IMAGE_WIDTH, export_figure, for_image, image_export_unavailable


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


def _with_buttons_and_title():
    figure = _figure()
    figure.update_layout(title=dict(text="Roofline at L2: batch 1, 2 threads", x=0.0, xanchor="left"),
                         updatemenus=[dict(type="buttons", buttons=[dict(label="AI at L1", method="update",
                                                                         args=[{}, {}])])])
    return figure


def test_an_image_is_1600_px_wide_without_the_figures_buttons(tmp_path):
    reason = image_export_unavailable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"image export must work in CI: {reason}")
        pytest.skip(reason)
    figure = _with_buttons_and_title()
    png = export_figure(figure, tmp_path / "fig.png").read_bytes()
    width, height = struct.unpack(">II", png[16:24])            # the PNG's IHDR chunk
    assert (width, height) == (IMAGE_WIDTH, IMAGE_HEIGHT)
    svg = export_figure(figure, tmp_path / "fig.svg").read_text()
    assert f'width="{IMAGE_WIDTH}"' in svg[:500]
    assert "AI at L1" not in svg and "Roofline at L2: batch 1, 2 threads" in svg
    assert figure.layout.updatemenus                             # the figure itself keeps its buttons


def test_for_image_keeps_the_whole_title_inside_the_canvas():
    image = for_image(_with_buttons_and_title())
    assert image.layout.width == IMAGE_WIDTH and not image.layout.updatemenus
    assert image.layout.title.xref == "container" and image.layout.title.x > 0 and image.layout.title.xanchor == "left"
