"""What the notebooks share: their set-up, in one call.

    setup = workbench.setup_notebook(repeats=7)
    model, ceilings = setup.model, setup.ceilings
    THREADS, REPEATS, FAST = setup.threads, setup.repeats, setup.fast

`ROOFLINE_FAST=1` in the environment (the notebook tests set it) means fewer timed repeats
(`setup.repeats`) and, where a notebook looks at `setup.fast`, smaller sweeps.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import engine
from engine.checks import check_repeats
# the module, not its function: measure_ceilings is looked up when called (as in profile.py)
from workbench import ceilings as ceilings_module
from workbench.ceilings import Ceilings
from workbench.profile import DEFAULT_MODEL, model_file

FAST_REPEATS = 3     # timed runs per measurement at most, with ROOFLINE_FAST=1


@dataclass(frozen=True)
class NotebookSetup:
    model_path: Path      # the ONNX file loaded (a zoo model's data/<name>.onnx for a name)
    model: engine.Model   # engine.load(model_path)
    ceilings: Ceilings    # this machine's roofs: workbench.measure_ceilings() (cached in data/ceilings/)
    threads: int          # every core of this machine (engine.available_cores())
    repeats: int          # timed runs per measurement (the median is kept)
    fast: bool            # ROOFLINE_FAST=1: fewer repeats and smaller sweeps


def setup_notebook(model_path=DEFAULT_MODEL, repeats: int = 7) -> NotebookSetup:
    """The model, this machine's ceilings, its core count and the repeats a notebook runs with.

    model_path: a zoo model name ("resnet50": workbench.models, its data/<name>.onnx
        written on first use) or an ONNX file; the default (data/mobilenet_v2.onnx:
        MobileNetV2 with torchvision's topology and synthetic weights, since speed depends
        on shapes, not weight values) is written first if it is missing; another missing
        file is a ValueError.
    repeats: timed runs per measurement; with ROOFLINE_FAST=1 at most FAST_REPEATS.
    """
    repeats = check_repeats(repeats)
    fast = os.environ.get("ROOFLINE_FAST") == "1"
    path = model_file(model_path)
    return NotebookSetup(model_path=path, model=engine.load(path), ceilings=ceilings_module.measure_ceilings(),
                         threads=engine.available_cores(), repeats=min(repeats, FAST_REPEATS) if fast else repeats,
                         fast=fast)
