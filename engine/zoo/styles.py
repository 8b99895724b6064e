"""How a zoo builder is asked to write its network: the exporters' conventions
(`EXPORTERS`, `export_style`) and the argument checks every builder shares."""
from __future__ import annotations

from engine.zoo.writer import _FLATTEN_STYLES, _POOL_STYLES, MAX_OPSET, MIN_OPSET, ExportStyle

def _check_common(width_mult: float, resolution: int, num_classes: int, opset: int) -> None:
    _check_sizes(width_mult, resolution, num_classes)
    if not (isinstance(opset, int) and MIN_OPSET <= opset <= MAX_OPSET):
        raise ValueError(f"opset: expected an int in {MIN_OPSET}..{MAX_OPSET}, got {opset!r}")


def _check_sizes(width_mult: float, resolution: int, num_classes: int) -> None:
    if not (isinstance(width_mult, (int, float)) and width_mult > 0):
        raise ValueError(f"width_mult: expected a positive number, got {width_mult!r}")
    if not (isinstance(resolution, int) and resolution >= 1):
        raise ValueError(f"resolution: expected a positive int (pixels), got {resolution!r}")
    if not (isinstance(num_classes, int) and num_classes >= 1):
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")


# The MobileNetV3, EfficientNet and ResNet builders cover the opsets torch's exporters write
# for them (HardSwish is opset 14; below it the HardSigmoid + Mul form)
NEW_MIN_OPSET = 13
# torch.onnx.export(model, x): "dynamo" is the default exporter of torch >= 2.9 (dynamo=True),
# "legacy" the TorchScript one (dynamo=False), the default before; what each writes, as seen in
# torch 2.14's exports of torchvision 0.29's models (tests/data/torchvision_exports/):
EXPORTERS = {
    # opset 18, BatchNorm folded by the onnxscript optimizer, AdaptiveAvgPool2d(1) as
    # ReduceMean over axes [-1, -2] (an input), torch.flatten as Reshape to [-1, C] with
    # allowzero=1, HardSigmoid with beta=0.5 written out
    "dynamo": dict(opset=18, pool_style="reduce_mean_negative_axes", flatten_style="reshape_constant",
                   reshape_allowzero=True, hardsigmoid_beta=True),
    # opset 17 (its default since torch 2.1), BatchNorm folded (eval-mode export),
    # GlobalAveragePool, Flatten(axis=1), HardSigmoid with alpha only
    "legacy": dict(opset=17, pool_style="global_average_pool", flatten_style="flatten",
                   reshape_allowzero=False, hardsigmoid_beta=False),
}
_HARDSWISH_STYLES = ("auto", "op", "hardsigmoid_mul")


def export_style(exporter: str = "dynamo", *, opset: int | None = None, separate_batchnorm: bool = False,
                 hardswish_style: str = "auto", pool_style: str | None = None, flatten_style: str | None = None,
                 dropout: bool = False, dynamic_batch: bool = True) -> ExportStyle:
    """The ExportStyle of the MobileNetV3 / EfficientNet / ResNet builders: `exporter`'s
    conventions (see EXPORTERS), each overridden by the keyword given.

    - opset: NEW_MIN_OPSET..MAX_OPSET (13..18).
    - separate_batchnorm: Conv (no bias) + BatchNormalization instead of the folded Conv.
    - hardswish_style: "op" (HardSwish, opset >= 14), "hardsigmoid_mul" (Mul(x,
      HardSigmoid(x, alpha=1/6)), as torch writes it below opset 14), "auto": by opset.
    - pool_style: "global_average_pool", "reduce_mean" (axes [2, 3]) or
      "reduce_mean_negative_axes" (axes [-1, -2]), for the head's and every SE's pooling.
    - flatten_style: "flatten", "reshape_constant", "reshape_shape_chain".
    - dropout: an inference-mode Dropout node where torchvision has nn.Dropout (no exporter
      writes it for an eval-mode model; an importer must take it as the identity).
    - dynamic_batch: input and output batch dimension symbolic ("N") or 1.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter: expected one of {tuple(EXPORTERS)}, got {exporter!r}")
    preset = EXPORTERS[exporter]
    opset = preset["opset"] if opset is None else opset
    if not (isinstance(opset, int) and NEW_MIN_OPSET <= opset <= MAX_OPSET):
        raise ValueError(f"opset: expected an int in {NEW_MIN_OPSET}..{MAX_OPSET}, got {opset!r}")
    pool_style = preset["pool_style"] if pool_style is None else pool_style
    flatten_style = preset["flatten_style"] if flatten_style is None else flatten_style
    _check_choice("hardswish_style", hardswish_style, _HARDSWISH_STYLES)
    _check_choice("pool_style", pool_style, _POOL_STYLES)
    _check_choice("flatten_style", flatten_style, _FLATTEN_STYLES)
    if hardswish_style == "auto":
        hardswish_style = "op" if opset >= 14 else "hardsigmoid_mul"
    elif hardswish_style == "op" and opset < 14:
        raise ValueError(f"hardswish_style='op' needs opset >= 14 (HardSwish is an opset-14 operator), got opset {opset}")
    for name, value in (("separate_batchnorm", separate_batchnorm), ("dropout", dropout),
                        ("dynamic_batch", dynamic_batch)):
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected a bool, got {value!r}")
    return ExportStyle(opset=opset, separate_batchnorm=separate_batchnorm, clip_style="inputs",
                       hardswish_style=hardswish_style, hardsigmoid_beta=preset["hardsigmoid_beta"],
                       pool_style=pool_style, flatten_style=flatten_style,
                       reshape_allowzero=preset["reshape_allowzero"], classifier_style="gemm", dropout=dropout,
                       dynamic_batch=dynamic_batch)
