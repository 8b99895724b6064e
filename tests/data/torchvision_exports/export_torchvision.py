"""Write the fixtures beside this file: the topology (tests/onnx_topology.py) of torchvision's
models as torch.onnx.export writes them, one JSON file per model and exporter.

Not part of the suite: it needs torch, torchvision, onnxscript (the dynamo exporter), which
the project does not install. Run in a throwaway venv from the repository's root:

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch torchvision onnx onnxscript
    PYTHONPATH=tests /tmp/torchvenv/bin/python tests/data/torchvision_exports/export_torchvision.py

Each model gets random weights (every parameter and BatchNorm statistic distinct, so the
exporter deduplicates none) and is exported in eval mode with a dynamic batch dimension,
with the TorchScript exporter (dynamo=False) at opsets 17 and 13 and the dynamo exporter
(dynamo=True, its default optimisation) at opset 18.
"""
from __future__ import annotations

import json
import pathlib
import tempfile
import warnings

import onnx
import torch
import torchvision

from onnx_topology import topology

HERE = pathlib.Path(__file__).resolve().parent
MODELS = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "resnet18", "resnet50")
EXPORTS = (("legacy", 17), ("legacy", 13), ("dynamo", 18))


def export(model: torch.nn.Module, exporter: str, opset: int, path: str) -> None:
    x = torch.randn(1, 3, 224, 224)
    if exporter == "legacy":
        torch.onnx.export(model, (x,), path, opset_version=opset, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, dynamo=False)
    else:
        batch = torch.export.Dim("N", min=1, max=1024)
        torch.onnx.export(model, (x,), path, opset_version=opset, input_names=["input"], output_names=["output"],
                          dynamic_shapes=({0: batch},), dynamo=True, external_data=False)


def main() -> None:
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


if __name__ == "__main__":
    main()
