"""Roofline Workbench's analysis side: machine ceilings, per-layer profiles, roofline
figures, reports.

    import workbench
    ceilings = workbench.measure_ceilings()            # cached in data/ceilings/
    frame = workbench.profile("data/mobilenet_v2.onnx", batch=1, threads=2)
    workbench.roofline_figure(frame, ceilings, level="L2").show()
    tuning = workbench.tune("data/mobilenet_v2.onnx", batch=1, threads=2)   # tiles per step
    tuning.figure(level="L2")                     # default -> tuned, an arrow per step
"""
import engine  # noqa: F401  (first: engine sets numba's CPU settings before numba is imported)
from workbench.ceilings import Ceilings, measure_ceilings
from workbench.compare import Comparison, compare
from workbench.export import export_figure, figure_html
from workbench.sweep import sweep, sweep_totals
from workbench.profile import DEFAULT_MODEL, profile
from workbench.report import write_report
from workbench.widgets import Explorer, slowest_layers
from workbench.roofline import roofline_figure, roofline_traces, update_roofline
from workbench.before_after import before_after_figure
from workbench.time_bars import time_bars
from workbench.notebook import setup_notebook
from workbench.tuning import TuningResult, tune
from workbench.activations import with_activations

__all__ = ["Ceilings", "measure_ceilings", "profile", "roofline_figure", "roofline_traces", "update_roofline",
           "time_bars", "before_after_figure", "figure_html", "write_report", "Explorer",
           "slowest_layers", "sweep", "sweep_totals", "compare", "Comparison",
           "export_figure", "setup_notebook", "DEFAULT_MODEL", "tune", "TuningResult",
           "with_activations"]
