"""Roofline Workbench's inference engine: MobileNets from ONNX, run by numba kernels.

    import engine
    model = engine.load("data/mobilenet_v2.onnx")        # path, bytes or onnx.ModelProto
    logits = model.run(x, threads=2, tiles=engine.Tiles(), hooks=[engine.Recorder()])

Nothing here imports the workbench, plotly, pandas or Jupyter.
"""
from engine import _numba_env  # noqa: F401  (must run before numba compiles anything)
from engine.errors import ModelError, UnsupportedOperatorError
from engine.hooks import LayerRecord, Recorder, RunInfo
from engine.checks import available_cores
from engine.model import DEFAULT_FUSE_BLOCKS, Model, load
from engine.perf_counters import PerfCounterHook
from engine.tiles import Tiles, TileSchedule
from engine import zoo  # noqa: E402
from engine.tune import TuneResult, tune

__all__ = ["ModelError", "UnsupportedOperatorError", "Tiles", "TileSchedule", "Model", "load", "available_cores",
           "DEFAULT_FUSE_BLOCKS", "Recorder", "LayerRecord", "RunInfo", "PerfCounterHook", "zoo", "tune", "TuneResult"]
