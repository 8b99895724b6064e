"""`PackedWeights`: every layer's weights in its kernel's layout, packed once per model into
one buffer."""
from __future__ import annotations

import numpy as np

from engine.graph import Graph, Layer
from engine.kernels import conv_nchwc, depthwise, direct_conv, linear, pointwise, squeeze_excite
from engine.kernels.layout import padded_channels
from engine.pages import aligned_empty

# The packing function of each kind of conv (Layer.conv_kind).
CONV_PACKERS = {"pointwise": pointwise.pack_pointwise, "depthwise": depthwise.pack_depthwise,
                "dense": conv_nchwc.pack_conv_nchwc, "direct": direct_conv.pack_direct}


class PackedWeights:
    """Kernel-layout weights of every layer, packed once per model: by_layer[name] is
    (packed weight, packed bias) — for a squeeze-and-excitation the tuple
    pack_squeeze_excite returns — views of one buffer."""

    def __init__(self, graph: Graph):
        self.by_layer: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for layer in graph.layers:
            if layer.op == "Conv":
                self.by_layer[layer.name] = CONV_PACKERS[layer.conv_kind](layer.weight, layer.bias)
            elif layer.op == "Linear":
                width = flat_width(graph, graph.producer_of(layer.inputs[0]), layer.input_shape[0])
                self.by_layer[layer.name] = linear.pack_linear(layer.weight, layer.bias, width)
            elif layer.op == "SqueezeExcite":
                self.by_layer[layer.name] = squeeze_excite.pack_squeeze_excite(
                    *(layer.attrs[key] for key in ("w1", "b1", "w2", "b2")))
        self._gather()

    def _gather(self) -> None:
        """Move every packed array into one buffer (engine.pages: on huge pages where the OS
        offers them), each starting on a 64-byte line; the arrays become views of it."""
        def lines(array: np.ndarray) -> int:            # float32 elements, rounded up to 64 bytes
            return -(-array.size // 16) * 16

        memory = aligned_empty(sum(lines(a) for pair in self.by_layer.values() for a in pair))
        offset = 0
        for name, pair in self.by_layer.items():
            views = []
            for array in pair:
                view = memory[offset:offset + array.size].reshape(array.shape)
                view[...] = array
                views.append(view)
                offset += lines(array)
            self.by_layer[name] = tuple(views)

    def of(self, names) -> int:
        """Bytes of the packed weights and biases of the layers `names`."""
        return sum(a.nbytes for name in names for a in self.by_layer.get(name, ()))

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for pair in self.by_layer.values() for a in pair)


def flat_width(graph: Graph, producer: Layer | None, features: int) -> int:
    """Width of the (N, F) buffer `producer` writes (or, for a Flatten, views): pooled
    vectors keep the channel padding (and an activation of one, or a flatten), everything
    else is `features` wide."""
    while producer is not None and producer.op in ("Flatten", "Activation"):    # a view ... of the pool
        producer = graph.producer_of(producer.inputs[0])
    if producer is not None and producer.op == "GlobalAveragePool":
        return padded_channels(producer.output_shape[0])
    return features
