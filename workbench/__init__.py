"""Roofline Workbench's analysis side: machine ceilings, per-layer profiles, roofline figures.

    from workbench import measure_ceilings
    ceilings = measure_ceilings()          # cached in data/ceilings/ after the first call
"""
from workbench.ceilings import Ceilings, measure_ceilings

__all__ = ["Ceilings", "measure_ceilings"]
