"""Plain numpy global average pooling: the reference for the engine's pooling kernel."""
from __future__ import annotations

import numpy as np


def global_average_pool(x):
    """x (N, C, H, W) -> (N, C) float64 means over H and W."""
    return np.asarray(x, np.float64).mean(axis=(2, 3))


def max_pool(x, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right):
    """ONNX MaxPool 2-d (dilation 1, ceil_mode 0): x (N, C, H, W) -> (N, C, Ho, Wo) float64,
    padding -inf (it never wins)."""
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    padded = np.full((n, c, h + pad_top + pad_bottom, w + pad_left + pad_right), -np.inf)
    padded[:, :, pad_top:pad_top + h, pad_left:pad_left + w] = x
    out_h = (padded.shape[2] - kernel_h) // stride_h + 1
    out_w = (padded.shape[3] - kernel_w) // stride_w + 1
    out = np.full((n, c, out_h, out_w), -np.inf)
    for i in range(kernel_h):
        for j in range(kernel_w):
            window = padded[:, :, i:i + (out_h - 1) * stride_h + 1:stride_h, j:j + (out_w - 1) * stride_w + 1:stride_w]
            out = np.maximum(out, window)
    return out
