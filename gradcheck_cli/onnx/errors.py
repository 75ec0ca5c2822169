"""Exceptions raised by the ONNX interpreter and loader.

They are kept in their own module so that callers (the CLI) can catch them
without importing the heavier interpreter machinery.
"""

from __future__ import annotations


class OnnxUnsupportedError(Exception):
    """An operator, opset version, attribute value or data type is not implemented.

    The message always names the op type, its domain and opset version, and the
    node name, so that a user can tell *which* node of a large export blocks the
    analysis (ONNX node names are what Netron and the exporters show).
    """

    def __init__(
        self,
        op_type: str,
        domain: str,
        version: int | None,
        node_name: str,
        detail: str = "",
    ) -> None:
        self.op_type = op_type
        self.domain = domain or "ai.onnx"
        self.version = version
        self.node_name = node_name
        self.detail = detail
        where = f"{self.domain} opset {version}" if version is not None else self.domain
        msg = f"unsupported ONNX op {op_type!r} ({where}) at node {node_name!r}"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)


class OnnxLoadError(ValueError):
    """The file is not a loadable, valid ONNX model (truncated, corrupt, fails the checker)."""


class OnnxExternalDataError(OnnxLoadError):
    """An external-data reference points outside the model's directory (or is otherwise unsafe)."""
