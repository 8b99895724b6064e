"""Which model: a name from engine.zoo's registry or a path -> the ONNX file, or an engine.Model.

The workbench takes a model the same way everywhere (workbench.profile, the Explorer's
model dropdown, the CLI's --model, sweeps, reports, notebooks and bench/latency.py): a
name of `engine.zoo.MODELS` ("mobilenet_v2", "resnet50", ...: torchvision's topologies
with synthetic weights, written to data/<name>.onnx on first use) or the path of an ONNX
file. A zoo name always means the zoo's model, even where a file of that name exists in
the working directory (a path to such a file: "./resnet50").
"""
from __future__ import annotations

import os
from pathlib import Path

import engine
from engine import zoo

# The repository's data/ folder: where zoo models are written on first use.
DATA_FOLDER = Path(__file__).resolve().parents[1] / "data"
DEFAULT_MODEL_NAME = "mobilenet_v2"     # the model every tool runs unless told


def model_names() -> tuple[str, ...]:
    """The zoo's model names (engine.zoo.MODELS), in its order."""
    return tuple(zoo.MODELS)


def is_model_name(model) -> bool:
    """`model` is a str naming a zoo model (not a path)."""
    return isinstance(model, str) and model in zoo.MODELS


def model_file(model=DEFAULT_MODEL_NAME) -> Path:
    """The ONNX file of `model`: a zoo name -> data/<name>.onnx (written first when missing,
    engine.zoo.model_path), a path -> that path if it is a file. ValueError for a missing
    file (naming the zoo's models) or another type."""
    if is_model_name(model):
        return zoo.model_path(model, folder=DATA_FOLDER)
    if not isinstance(model, (str, os.PathLike)):
        raise ValueError(f"model must be a zoo model name ({', '.join(model_names())}) or an ONNX file path, "
                         f"got {type(model).__name__}")
    path = Path(model)
    if not path.is_file():
        raise ValueError(f"model must be an existing ONNX file or a zoo model name ({', '.join(model_names())}), "
                         f"got {str(model)!r} (not found)")
    return path


def model_label(model) -> str:
    """A short name for a model argument: the zoo name, or the file's stem."""
    if is_model_name(model):
        return model
    if isinstance(model, (str, os.PathLike)):
        return Path(model).stem
    return "model"


def load_model(model, resolution: int | None = None) -> engine.Model:
    """engine.load of a zoo name or a path (model_file). resolution (pixels, zoo names
    only): build the zoo model at this input size in memory instead (smaller, faster
    runs: the notebooks' ROOFLINE_FAST=1 mode); None: the file's own (224)."""
    if resolution is None:
        return engine.load(model_file(model))
    if not is_model_name(model):
        raise ValueError(f"resolution= needs a zoo model name ({', '.join(model_names())}), got {model!r}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or not 32 <= resolution <= 1024:
        raise ValueError(f"resolution must be an int in 32..1024 (pixels), got {resolution!r}")
    return engine.load(zoo.MODELS[model](resolution=resolution))
