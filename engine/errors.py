"""Errors the engine raises. Every load failure is a ModelError; run-time argument
errors are plain ValueError naming what was expected and what was given."""
from __future__ import annotations


class ModelError(Exception):
    """The model cannot be loaded: missing or not ONNX, unsupported, or inconsistent."""


class UnsupportedOperatorError(ModelError):
    """A node whose op type (or attributes) no kernel of the engine implements."""

    def __init__(self, node_name: str, op_type: str, supported: list[str] | tuple[str, ...], detail: str = ""):
        self.node_name = node_name
        self.op_type = op_type
        self.supported = tuple(sorted(supported))
        message = f"node {node_name!r}: op type {op_type!r} is not supported"
        if detail:
            message += f" ({detail})"
        message += "; supported op types: " + ", ".join(self.supported)
        super().__init__(message)
