"""Write the fixtures beside this file from torch and torchvision, which the project does not
install (run in a throwaway venv, from the repository's root):

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch torchvision onnx onnxscript

1. `<name>.<exporter><opset>.json`: the topology (tests/onnx_topology.py) of torchvision's
   models as torch.onnx.export writes them:

       PYTHONPATH=tests /tmp/torchvenv/bin/python tests/data/torchvision_exports/export_torchvision.py topology

2. `<name>.logits.json`: torchvision's own model run with the zoo builder's weights (seed 0,
   32x32, 10 classes, BatchNorm separate: its initializers are named as torchvision's
   state_dict), on np.random.default_rng(1).standard_normal((2, 3, 32, 32)): the builders
   compute torchvision's function, not only its shapes. The models are written with the
   project's venv, then run with torch's:

       .venv/bin/python tests/data/torchvision_exports/export_torchvision.py write-models /tmp/zoo_models
       /tmp/torchvenv/bin/python tests/data/torchvision_exports/export_torchvision.py torch-logits /tmp/zoo_models

Each model gets random weights (every parameter and BatchNorm statistic distinct, so the
exporter deduplicates none) and is exported in eval mode with a dynamic batch dimension,
with the TorchScript exporter (dynamo=False) at opsets 17 and 13 and the dynamo exporter
(dynamo=True, its default optimisation) at opset 18.
"""
from __future__ import annotations

import json
import pathlib
import sys
import tempfile
import warnings

import numpy as np
import onnx

HERE = pathlib.Path(__file__).resolve().parent
MODELS = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "resnet18", "resnet50")
EXPORTS = (("legacy", 17), ("legacy", 13), ("dynamo", 18))
LOGITS = dict(resolution=32, num_classes=10, seed=0, input_seed=1, batch=2)


def logits_input() -> np.ndarray:
    """The input of the logits fixtures: (batch, 3, resolution, resolution) float32."""
    shape = (LOGITS["batch"], 3, LOGITS["resolution"], LOGITS["resolution"])
    return np.random.default_rng(LOGITS["input_seed"]).standard_normal(shape).astype(np.float32)


def export(model, exporter: str, opset: int, path: str) -> None:
    import torch

    x = torch.randn(1, 3, 224, 224)
    if exporter == "legacy":
        torch.onnx.export(model, (x,), path, opset_version=opset, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, dynamo=False)
    else:
        batch = torch.export.Dim("N", min=1, max=1024)
        torch.onnx.export(model, (x,), path, opset_version=opset, input_names=["input"], output_names=["output"],
                          dynamic_shapes=({0: batch},), dynamo=True, external_data=False)


def write_topologies() -> None:
    import torch
    import torchvision

    from onnx_topology import topology

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    for name in MODELS:
        model = getattr(torchvision.models, name)().eval()
        with torch.no_grad():
            for parameter_name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
                if tensor.dtype.is_floating_point:
                    tensor.copy_(torch.rand_like(tensor) + 0.5 if parameter_name.endswith("running_var")
                                 else tensor + 0.01 * torch.randn_like(tensor))
        for exporter, opset in EXPORTS:
            with tempfile.TemporaryDirectory() as folder:
                path = f"{folder}/model.onnx"
                export(model, exporter, opset, path)
                exported = onnx.load(path)
            fixture = {"model": name, "exporter": exporter, "opset": opset,
                       "torch": torch.__version__, "torchvision": torchvision.__version__,
                       "parameters": sum(p.numel() for p in model.parameters()),
                       "written_opset": [o.version for o in exported.opset_import if o.domain in ("", "ai.onnx")][0],
                       "nodes": topology(exported)}
            lines = ",\n".join(json.dumps(node, separators=(",", ":")) for node in fixture.pop("nodes"))
            header = json.dumps(fixture, separators=(",", ":"))[:-1]
            (HERE / f"{name}.{exporter}{opset}.json").write_text(f'{header},"nodes":[\n{lines}\n]}}\n')
            print("wrote", name, exporter, opset, flush=True)


def write_models(folder: str) -> None:
    """The builders' models whose logits torch computes (run with the project's venv)."""
    sys.path.insert(0, str(HERE.parents[2]))
    from engine import zoo

    pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        model = zoo.MODELS[name](resolution=LOGITS["resolution"], num_classes=LOGITS["num_classes"],
                                 seed=LOGITS["seed"], separate_batchnorm=True)
        zoo.save_model(model, f"{folder}/{name}.onnx")
        print("wrote", f"{folder}/{name}.onnx", flush=True)


def write_torch_logits(folder: str) -> None:
    """torchvision's models with the builders' weights: every state_dict entry (but
    num_batches_tracked) from the initializer of that name, of that shape; the logits to JSON."""
    import torch
    import torchvision
    from onnx import numpy_helper

    for name in MODELS:
        weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(f"{folder}/{name}.onnx").graph.initializer}
        model = getattr(torchvision.models, name)(num_classes=LOGITS["num_classes"]).eval()
        state = model.state_dict()
        for key, tensor in state.items():
            if key.endswith("num_batches_tracked"):
                continue
            assert tuple(weights[key].shape) == tuple(tensor.shape), (name, key)
            state[key] = torch.from_numpy(weights[key].copy())
        unused = set(weights) - set(state)
        assert all(weights[key].size <= 2 for key in unused), (name, unused)  # only axes / shapes / Clip bounds
        model.load_state_dict(state)
        with torch.no_grad():
            logits = model(torch.from_numpy(logits_input())).numpy()
        fixture = dict(model=name, torch=torch.__version__, torchvision=torchvision.__version__, **LOGITS,
                       logits=[[float(v) for v in row] for row in logits])
        (HERE / f"{name}.logits.json").write_text(json.dumps(fixture) + "\n")
        print("wrote", name, "logits", flush=True)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "topology"
    if command == "topology":
        write_topologies()
    elif command == "write-models":
        write_models(sys.argv[2])
    elif command == "torch-logits":
        write_torch_logits(sys.argv[2])
    else:
        sys.exit(f"unknown command {command!r}: topology | write-models FOLDER | torch-logits FOLDER")
