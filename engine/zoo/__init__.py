"""Image-classification ONNX models built from scratch, with synthetic weights: the engine's
default model (MobileNetV2) and the networks the importer, kernels and lessons are tested on.

The weights are SYNTHETIC. Pretrained weights cannot be downloaded on this machine, and the
speed of a dense fp32 engine does not depend on the weight values — only on the shapes, which
are exactly torchvision's. Any real export of these networks (for example torchvision's
`mobilenet_v2(weights=...)` exported with `torch.onnx.export`) can be loaded instead.

- `MODELS`: name -> builder, for "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small",
  "mobilenet_v3_large", "efficientnet_b0", "resnet18", "resnet50". Every builder takes
  keyword arguments `resolution` (pixels), `num_classes` and `seed` and returns an
  onnx.ModelProto with input "input" (N, 3, resolution, resolution) and output "output"
  (N, num_classes); call them with keywords (the MobileNets and EfficientNet take width_mult
  first, the ResNets do not). MobileNetV3, EfficientNet-B0 and the ResNets are written as
  torch.onnx.export writes torchvision's models: `exporter="dynamo"` (the default, torch's
  default exporter today: opset 18, ReduceMean, Reshape) or `"legacy"` (TorchScript: opset
  17, GlobalAveragePool, Flatten), each convention overridable (opset 13..18, HardSwish op or
  HardSigmoid + Mul, pooling, flattening, BatchNorm separate, Dropout, batch): see
  engine.zoo.styles.export_style. tests/test_zoo_models.py checks them node by node against
  real exports.
- `model_path(name, folder)`: data/<name>.onnx, written (atomically) with the builder's
  defaults on first use.
- `save_model(model, path, external_data=...)`: writes a model as one file, or as torch's
  default exporter today writes it (`torch.onnx.export(..., dynamo=True)`, opset 18+): the
  graph in `model.onnx`, the initializers' bytes in `model.onnx.data` beside it.
- `write_default_model(path)`: writes `mobilenet_v2()` atomically if the file is missing;
  `python -m engine.zoo [path]` does the same (the Makefile calls it), and
  `python -m engine.zoo NAME [path]` writes model NAME.

What is where: engine.zoo.parameters (synthetic weights), engine.zoo.writer (the graph
writer), engine.zoo.styles (the exporters' conventions, argument checks),
engine.zoo.mobilenet (V1, V2, V3), engine.zoo.efficientnet, engine.zoo.resnet.
"""
from __future__ import annotations

import os
import pathlib
import sys
import tempfile
from typing import Callable

import onnx
from onnx import external_data_helper

from engine.zoo.efficientnet import EFFICIENTNET_B0_SETTINGS, efficientnet_b0
from engine.zoo.mobilenet import (
    MOBILENET_V1_SETTINGS, MOBILENET_V2_SETTINGS, MOBILENET_V3_LARGE_SETTINGS, MOBILENET_V3_SMALL_SETTINGS,
    mobilenet_v1, mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small,
)
from engine.zoo.resnet import resnet18, resnet50
from engine.zoo.parameters import BN_EPSILON, make_divisible
from engine.zoo.styles import EXPORTERS, NEW_MIN_OPSET, export_style
from engine.zoo.writer import BATCH_DIM_NAME, INPUT_NAME, MAX_OPSET, MIN_OPSET, OUTPUT_NAME, ExportStyle

__all__ = ["MODELS", "model_path", "save_model", "write_default_model", "main", "make_divisible", "export_style",
           "ExportStyle", "EXPORTERS", "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
           "efficientnet_b0", "resnet18", "resnet50", "MIN_OPSET", "MAX_OPSET", "NEW_MIN_OPSET", "BN_EPSILON",
           "INPUT_NAME", "OUTPUT_NAME", "BATCH_DIM_NAME", "DEFAULT_MODEL_PATH", "DATA_FOLDER",
           "EXTERNAL_DATA_THRESHOLD", "MOBILENET_V1_SETTINGS", "MOBILENET_V2_SETTINGS", "MOBILENET_V3_LARGE_SETTINGS",
           "MOBILENET_V3_SMALL_SETTINGS", "EFFICIENTNET_B0_SETTINGS"]

DEFAULT_MODEL_PATH = "data/mobilenet_v2.onnx"
# the repository's data/ folder: where model_path writes by default
DATA_FOLDER = pathlib.Path(__file__).resolve().parents[2] / "data"
# save_model(external_data=True): initializers of this many bytes or more go to the data file
# (onnx_ir.save's default size_threshold_bytes, which torch's dynamo exporter saves through)
EXTERNAL_DATA_THRESHOLD = 256

MODELS: dict[str, Callable[..., onnx.ModelProto]] = {
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v2": mobilenet_v2,
    "mobilenet_v3_small": mobilenet_v3_small,
    "mobilenet_v3_large": mobilenet_v3_large,
    "efficientnet_b0": efficientnet_b0,
    "resnet18": resnet18,
    "resnet50": resnet50,
}


def save_model(model: onnx.ModelProto, path: str | os.PathLike, *, external_data: bool = False) -> pathlib.Path:
    """Write `model` to `path` (its folder made if missing); return the path.

    external_data=True writes it as torch's dynamo exporter does (opset 18+, through
    onnx_ir.save): every initializer of EXTERNAL_DATA_THRESHOLD bytes or more moves to one
    file named `<path's name>.data` in the same folder (`model.onnx` + `model.onnx.data`),
    which the graph names by that relative name with each tensor's offset and length; smaller
    initializers (Clip bounds, axes, shapes) and Constant nodes stay in the graph. A data file
    already there is replaced, not appended to. `model` itself is not modified."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not external_data:
        path.write_bytes(model.SerializeToString())
        return path
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    data_path = path.with_name(path.name + ".data")
    data_path.unlink(missing_ok=True)          # onnx appends to an existing data file
    external_data_helper.convert_model_to_external_data(copy, all_tensors_to_one_file=True, location=data_path.name,
                                                        size_threshold=EXTERNAL_DATA_THRESHOLD, convert_attribute=False)
    onnx.save_model(copy, str(path))
    return path


def _check_name(name: str) -> None:
    if name not in MODELS:
        raise ValueError(f"name: unknown model {name!r}; known models: {', '.join(MODELS)}")


def model_path(name: str, folder: str | os.PathLike = DATA_FOLDER) -> pathlib.Path:
    """`folder`/<name>.onnx (default: the repository's data/), written with `MODELS[name]()`
    (default arguments, seed 0) if no file is there; an existing file is used as it is. A
    name not in MODELS is a ValueError listing the known ones."""
    _check_name(name)
    return _write_if_missing(pathlib.Path(folder) / f"{name}.onnx", MODELS[name])


def write_default_model(path: str | os.PathLike = DEFAULT_MODEL_PATH) -> pathlib.Path:
    """Write `mobilenet_v2()` to `path` if no file is there (an existing file is left as it is);
    return the path. Written to a temporary file in the same folder then renamed, so a reader
    never sees a half-written model."""
    return _write_if_missing(pathlib.Path(path), mobilenet_v2)


def _write_if_missing(path: pathlib.Path, build: Callable[[], onnx.ModelProto]) -> pathlib.Path:
    """Write build() to `path` atomically (a temporary file in the same folder, then renamed)
    unless a file is there; return the path."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    data = build().SerializeToString()
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    return path


_USAGE = f"usage: python -m engine.zoo [NAME] [path]   (NAME: {' | '.join(MODELS)})\n"


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.zoo [path]`: write the default model (data/mobilenet_v2.onnx) if
    missing; `python -m engine.zoo NAME [path]`: write model NAME (to data/NAME.onnx by
    default) if missing. Prints the path."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 2 or (len(argv) == 2 and argv[0] not in MODELS):
        sys.stderr.write(_USAGE if len(argv) > 2 else f"unknown model {argv[0]!r}\n" + _USAGE)
        return 2
    if argv and argv[0] in MODELS:
        name = argv[0]
        path = _write_if_missing(pathlib.Path(argv[1]), MODELS[name]) if len(argv) == 2 else model_path(name)
    else:
        path = write_default_model(argv[0] if argv else DEFAULT_MODEL_PATH)
    sys.stdout.write(f"{path}\n")
    return 0

