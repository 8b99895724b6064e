"""Figures to files: HTML always (`figure_html`: plotly.js inline, works offline), PNG and
SVG through kaleido when it and a Chromium are available (Debian's `chromium` at
/usr/bin/chromium is used when kaleido finds no browser of its own).

An image is for pasting in a slide (`for_image`): IMAGE_WIDTH px wide, without the
figure's buttons (updatemenus: they do nothing in an image), the title inside the canvas."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import plotly.graph_objects as go

from workbench.atomic import atomic_path

IMAGE_SUFFIXES = (".png", ".svg")
SYSTEM_CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
IMAGE_WIDTH = 1600            # px: a slide's width
IMAGE_HEIGHT = 900            # px, unless the figure sets its own height


def figure_html(figure: go.Figure) -> str:
    """A full, self-contained HTML page of `figure`: plotly.js is inlined from the installed
    plotly package (no CDN, no network needed to view it); MathJax is not included."""
    return figure.to_html(full_html=True, include_plotlyjs=True, include_mathjax=False,
                          config={"displaylogo": False, "responsive": True})


def for_image(fig: go.Figure, width: int = IMAGE_WIDTH) -> go.Figure:
    """A copy of `fig` as an image shows it: `width` px wide (its own height, else
    IMAGE_HEIGHT), no updatemenus (buttons), the title anchored a few px inside the left
    edge so no letter is cut off."""
    image = go.Figure(fig)
    height = image.layout.height or IMAGE_HEIGHT
    image.layout.updatemenus = ()           # update_layout(updatemenus=[]) would keep them
    image.update_layout(width=width, height=height, autosize=False)
    image.update_layout(title=dict(x=0.01, xref="container", xanchor="left"))
    return image


def image_export_unavailable() -> str | None:
    """None when PNG/SVG export works here, else the reason it does not."""
    try:
        import kaleido  # noqa: F401  (may be missing: then image export says why)
    except ImportError:
        return "kaleido is not installed (pip install kaleido)"
    if not (os.environ.get("BROWSER_PATH") or any(Path(p).exists() for p in SYSTEM_CHROMIUM)
            or shutil.which("chromium") or shutil.which("google-chrome")):
        return "no Chromium found for kaleido (apt-get install chromium, or set BROWSER_PATH)"
    return None


def export_figure(fig: go.Figure, path) -> Path:
    """Write `fig` to `path` by its suffix (.html, .png or .svg), atomically; an image as
    `for_image` draws it (IMAGE_WIDTH px wide, no buttons).

    Raises ValueError for another suffix and RuntimeError naming what is missing when an
    image is asked for where kaleido or Chromium is not available."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".html", *IMAGE_SUFFIXES):
        raise ValueError(f"cannot export a figure to {path.name!r}: use .html, .png or .svg")
    if suffix != ".html":
        reason = image_export_unavailable()
        if reason:
            raise RuntimeError(f"cannot write {path.name}: {reason}")
        if not os.environ.get("BROWSER_PATH"):
            browser = next((p for p in SYSTEM_CHROMIUM if Path(p).exists()), None)
            if browser:
                os.environ["BROWSER_PATH"] = browser
    with atomic_path(path, suffix=suffix) as temporary:
        if suffix == ".html":
            temporary.write_text(figure_html(fig), encoding="utf-8")
        else:
            image = for_image(fig)
            image.write_image(str(temporary), format=suffix[1:], width=image.layout.width,
                              height=image.layout.height)
    return path
