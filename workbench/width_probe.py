"""`WidthProbe`: a zero-height widget that tells Python how wide its container is (CSS px).

Why: the plotly FigureWidget (an anywidget) draws itself once, before JupyterLab attaches
it to the page, so it cannot see its output area and falls back to plotly's default 700
px, and it never hears of a resize inside an ipywidgets box (plotly.py issues #4027,
#5208). The probe sits in the same box as the figure, watches its own width with a
ResizeObserver, and syncs it to `width`; the Explorer sets the figure's layout.width from
it. Without a front end (tests, a static render) width stays 0 and nothing changes.
"""
from __future__ import annotations

import anywidget
import traitlets

_ESM = """
export default {
  render({ model, el }) {
    el.style.width = "100%";
    el.style.height = "0px";
    const report = () => {
      const width = Math.round(el.getBoundingClientRect().width);
      if (width > 0 && width !== model.get("width")) {
        model.set("width", width);
        model.save_changes();
      }
    };
    const observer = new ResizeObserver(report);
    observer.observe(el);
    return () => observer.disconnect();
  }
};
"""


class WidthProbe(anywidget.AnyWidget):
    """width: the probe's width in CSS px as the page last reported it (0: not shown yet)."""

    _esm = _ESM
    width = traitlets.Int(0).tag(sync=True)
