"""What a layer *is*, independent of how it was observed: its kind, and the row it gets (:class:`LayerInfo`).

Every front end (nn.Module hooks, torch.export graphs, TorchScript graphs, ONNX nodes)
maps what it sees onto one small vocabulary of kinds, so the rules and the init advice
are written once. This module is pure Python: no torch import.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field

# Layers whose weights carry the signal across depth: the trend rules and the init advice use them.
WEIGHT_KINDS = frozenset({"linear", "conv", "conv_transpose"})
NORM_KINDS = frozenset({"batchnorm", "layernorm", "groupnorm", "instancenorm", "rmsnorm"})
# Rectifiers with an exactly-zero region: the only layers where a unit can be "dead".
RECTIFIER_KINDS = frozenset({"relu", "relu6"})
# Layers whose outputs are affine maps, normalisations or mixtures of their inputs: an exact zero there
# is an accident, not sparsity, so their zero fraction is not counted (it costs two passes over the output).
DENSE_KINDS = WEIGHT_KINDS | NORM_KINDS | {"embedding", "attention", "rnn"}
# Layers that do not change which activation follows a weight layer (skipped when looking ahead).
TRANSPARENT_KINDS = frozenset({"dropout", "identity", "flatten", "reshape", "pool"})
ACTIVATION_KINDS = frozenset(
    {
        "relu", "relu6", "leaky_relu", "prelu", "elu", "selu", "celu", "gelu", "silu", "mish",
        "softplus", "sigmoid", "tanh", "hardtanh", "hardsigmoid", "hardswish", "softsign",
        "logsigmoid", "softmax", "log_softmax",
    }
)


_NUMBERED = re.compile(r"[\d.#]+")


def display_name(name: str, type_name: str | None) -> str:
    """A layer's name as every message and table shows it: ``0 (Linear)`` for a name that is only numbers
    (``nn.Sequential`` children: ``0``, ``3.1``, ``2#2``), which would read as a quantity; other names as they are.
    The JSON keeps the plain name (``layer`` fields, ``--ignore`` globs match it)."""
    if type_name and _NUMBERED.fullmatch(name):
        return f"{name} ({type_name})"
    return name


@dataclass(frozen=True)
class Saturation:
    """A bounded activation's asymptotes: outputs within ``margin`` of either end count as saturated.

    For sigmoid the margin 0.01 means outputs below 0.01 or above 0.99 (|z| > 4.6, where
    sigma'(z) < 0.01); for tanh |y| > 0.99 (|z| > 2.65, where tanh'(z) < 0.02). Hard variants
    clamp exactly, so their margin is 0: an output at the bound has zero derivative.
    """

    low: float
    high: float
    margin: float

    @property
    def centre(self) -> float:
        return (self.low + self.high) / 2

    @property
    def cutoff(self) -> float:
        """|y - centre| at or above which an output is saturated."""
        return (self.high - self.low) / 2 - self.margin


SATURATION_MARGIN = 0.01
SATURATION = {
    "sigmoid": Saturation(0.0, 1.0, SATURATION_MARGIN),
    "tanh": Saturation(-1.0, 1.0, SATURATION_MARGIN),
    "hardsigmoid": Saturation(0.0, 1.0, 0.0),
    "hardtanh": Saturation(-1.0, 1.0, 0.0),
}


def saturation_for(kind: str, attrs: dict[str, float] | None = None) -> Saturation | None:
    """Saturation bounds for a layer, honouring hardtanh's min_val/max_val when known."""
    base = SATURATION.get(kind)
    if base is not None and kind == "hardtanh" and attrs:
        return Saturation(attrs.get("min_val", base.low), attrs.get("max_val", base.high), 0.0)
    return base


# torch.nn module class name -> kind. Class names (not classes) keep this importable without torch
# and let us recognise look-alikes from other libraries (HF's Conv1D is a transposed Linear).
MODULE_KINDS: dict[str, str] = {
    "Linear": "linear", "LazyLinear": "linear", "NonDynamicallyQuantizableLinear": "linear",
    "Bilinear": "linear", "Conv1D": "linear",
    "Conv1d": "conv", "Conv2d": "conv", "Conv3d": "conv",
    "LazyConv1d": "conv", "LazyConv2d": "conv", "LazyConv3d": "conv",
    "ConvTranspose1d": "conv_transpose", "ConvTranspose2d": "conv_transpose", "ConvTranspose3d": "conv_transpose",
    "Embedding": "embedding", "EmbeddingBag": "embedding",
    "BatchNorm1d": "batchnorm", "BatchNorm2d": "batchnorm", "BatchNorm3d": "batchnorm", "SyncBatchNorm": "batchnorm",
    "LayerNorm": "layernorm", "GroupNorm": "groupnorm", "RMSNorm": "rmsnorm",
    "InstanceNorm1d": "instancenorm", "InstanceNorm2d": "instancenorm", "InstanceNorm3d": "instancenorm",
    "ReLU": "relu", "ReLU6": "relu6", "LeakyReLU": "leaky_relu", "PReLU": "prelu", "RReLU": "leaky_relu",
    "ELU": "elu", "SELU": "selu", "CELU": "celu", "GELU": "gelu", "SiLU": "silu", "Mish": "mish",
    "Softplus": "softplus", "Sigmoid": "sigmoid", "Tanh": "tanh", "Hardtanh": "hardtanh",
    "Hardsigmoid": "hardsigmoid", "Hardswish": "hardswish", "Softsign": "softsign", "LogSigmoid": "logsigmoid",
    "Softmax": "softmax", "LogSoftmax": "log_softmax",
    "Dropout": "dropout", "Dropout1d": "dropout", "Dropout2d": "dropout", "Dropout3d": "dropout",
    "AlphaDropout": "dropout", "Identity": "identity", "Flatten": "flatten", "Unflatten": "reshape",
    "MaxPool1d": "pool", "MaxPool2d": "pool", "MaxPool3d": "pool", "AvgPool1d": "pool", "AvgPool2d": "pool",
    "AvgPool3d": "pool", "AdaptiveAvgPool1d": "pool", "AdaptiveAvgPool2d": "pool", "AdaptiveAvgPool3d": "pool",
    "AdaptiveMaxPool1d": "pool", "AdaptiveMaxPool2d": "pool", "AdaptiveMaxPool3d": "pool",
    "MultiheadAttention": "attention", "LSTM": "rnn", "GRU": "rnn", "RNN": "rnn",
    "LSTMCell": "rnn", "GRUCell": "rnn", "RNNCell": "rnn",
}

# Graph operator name (aten op without namespace/overload, also TorchScript's aten::x) -> kind.
OP_KINDS: dict[str, str] = {
    "linear": "linear", "addmm": "linear", "bilinear": "linear",
    "conv1d": "conv", "conv2d": "conv", "conv3d": "conv", "convolution": "conv", "_convolution": "conv",
    "conv_transpose1d": "conv_transpose", "conv_transpose2d": "conv_transpose", "conv_transpose3d": "conv_transpose",
    "embedding": "embedding", "embedding_bag": "embedding",
    "batch_norm": "batchnorm", "_native_batch_norm_legit_functional": "batchnorm",
    "native_batch_norm": "batchnorm", "_native_batch_norm_legit_no_training": "batchnorm",
    "layer_norm": "layernorm", "native_layer_norm": "layernorm", "group_norm": "groupnorm",
    "native_group_norm": "groupnorm", "instance_norm": "instancenorm", "rms_norm": "rmsnorm",
    "relu": "relu", "relu_": "relu", "relu6": "relu6", "hardtanh": "hardtanh", "hardtanh_": "hardtanh",
    "leaky_relu": "leaky_relu", "leaky_relu_": "leaky_relu", "prelu": "prelu", "_prelu_kernel": "prelu",
    "rrelu": "leaky_relu", "elu": "elu", "elu_": "elu", "selu": "selu", "selu_": "selu", "celu": "celu",
    "gelu": "gelu", "silu": "silu", "silu_": "silu", "mish": "mish", "softplus": "softplus",
    "sigmoid": "sigmoid", "sigmoid_": "sigmoid", "tanh": "tanh", "tanh_": "tanh",
    "hardsigmoid": "hardsigmoid", "hardswish": "hardswish", "softsign": "softsign", "log_sigmoid": "logsigmoid",
    "softmax": "softmax", "_softmax": "softmax", "log_softmax": "log_softmax", "_log_softmax": "log_softmax",
    "scaled_dot_product_attention": "attention", "lstm": "rnn", "gru": "rnn", "rnn_tanh": "rnn", "rnn_relu": "rnn",
}

# ONNX op_type -> kind (MatMul and Gather count as layers only with an initializer weight; see onnx_nodes).
ONNX_KINDS: dict[str, str] = {
    "Gemm": "linear", "MatMul": "linear", "Conv": "conv", "ConvTranspose": "conv_transpose", "Gather": "embedding",
    "BatchNormalization": "batchnorm", "LayerNormalization": "layernorm", "GroupNormalization": "groupnorm",
    "InstanceNormalization": "instancenorm", "RMSNormalization": "rmsnorm",
    "Relu": "relu", "LeakyRelu": "leaky_relu", "PRelu": "prelu", "Elu": "elu", "Selu": "selu", "Celu": "celu",
    "Gelu": "gelu", "Mish": "mish", "Softplus": "softplus", "Sigmoid": "sigmoid", "Tanh": "tanh",
    "HardSigmoid": "hardsigmoid", "HardSwish": "hardswish", "Softsign": "softsign",
    "Softmax": "softmax", "LogSoftmax": "log_softmax",
    "LSTM": "rnn", "GRU": "rnn", "RNN": "rnn", "Attention": "attention",
}

# Ops worth a row of their own in a graph (the rest -- views, arithmetic, casts -- are plumbing).
OBSERVED_OP_KINDS = WEIGHT_KINDS | NORM_KINDS | ACTIVATION_KINDS | {"embedding", "attention", "rnn"}


# Normalisation and activation modules of other libraries, by what their class name says they are:
# HF's LlamaRMSNorm, T5LayerNorm, ConvNextLayerNorm, MambaRMSNorm, GemmaRMSNorm...; NewGELUActivation,
# QuickGELUActivation, timm's Swish... Norms first: "...LayerNorm" must not read as an activation.
_NORM_HINTS = (
    ("rmsnorm", "rmsnorm"), ("layernorm", "layernorm"), ("groupnorm", "groupnorm"), ("batchnorm", "batchnorm"),
    ("instancenorm", "instancenorm"),
)
_NAME_HINTS = (
    ("leakyrelu", "leaky_relu"), ("relu6", "relu6"), ("relu", "relu"), ("gelu", "gelu"), ("silu", "silu"),
    ("swish", "silu"), ("mish", "mish"), ("sigmoid", "sigmoid"), ("tanh", "tanh"), ("softplus", "softplus"),
)


@functools.lru_cache(maxsize=4096)
def module_kind(class_name: str) -> str:
    """Kind of an nn.Module class (``"other"`` for anything we do not recognise). A pure function of the
    name, so cached: the hint scans took ~4 us a module a call for the classes not in the table."""
    class_name = class_name.removeprefix("Parametrized")  # torch.nn.utils.parametrize's subclass of the layer
    kind = MODULE_KINDS.get(class_name)
    if kind is not None:
        return kind
    lowered = class_name.lower()
    for hint, hinted_kind in _NORM_HINTS:
        if hint in lowered:
            return hinted_kind
    if lowered.endswith("norm"):  # a norm of another name (FooNorm) normalises per sample like LayerNorm
        return "layernorm"
    for hint, hinted_kind in _NAME_HINTS:
        if hint in lowered:
            return hinted_kind
    return "other"


def op_base_name(op_name: str) -> str:
    """``aten::relu_`` / ``aten.relu.default`` / ``relu`` -> ``relu_`` / ``relu`` / ``relu``."""
    name = op_name.split("::")[-1]
    if name.startswith("aten."):
        name = name[len("aten."):]
    return name.split(".")[0]


def op_kind(op_name: str) -> str:
    """Kind of a graph op given as ``aten::relu``, ``aten.relu.default`` or ``relu``."""
    return OP_KINDS.get(op_base_name(op_name), "other")


@dataclass(frozen=True)
class InitScheme:
    """The init that keeps activation variance constant through a layer and what follows it."""

    scheme: str  # "he" | "xavier" | "lecun"
    gain: float
    activation_after: str

    def recommended_std(self, fan_in: int, fan_out: int) -> float:
        if self.scheme == "he":
            return self.gain / math.sqrt(fan_in)
        if self.scheme == "lecun":
            return 1.0 / math.sqrt(fan_in)
        return self.gain * math.sqrt(2.0 / (fan_in + fan_out))


def init_scheme_for(activation_after: str, negative_slope: float | None = None) -> InitScheme:
    """Pick He/Xavier/LeCun and the gain (as torch.nn.init.calculate_gain) for the following activation.

    ReLU family -> He (gain sqrt(2), or sqrt(2/(1+a^2)) for leaky slope a); smooth rectifiers
    (GELU/SiLU/ELU/Mish/Softplus) are treated like ReLU, the usual practice; tanh -> Xavier with
    gain 5/3; SELU -> LeCun (self-normalising networks need Var(W) = 1/fan_in); sigmoid, softmax
    and no activation -> Xavier with gain 1.
    """
    if activation_after in {"leaky_relu", "prelu"}:
        slope = 0.25 if negative_slope is None and activation_after == "prelu" else (negative_slope or 0.01)
        return InitScheme("he", math.sqrt(2.0 / (1 + slope**2)), activation_after)
    if activation_after in {"relu", "relu6", "gelu", "silu", "elu", "celu", "mish", "softplus", "hardswish"}:
        return InitScheme("he", math.sqrt(2.0), activation_after)
    if activation_after in {"tanh", "hardtanh", "softsign"}:
        return InitScheme("xavier", 5.0 / 3.0, activation_after)
    if activation_after == "selu":
        return InitScheme("lecun", 1.0, activation_after)
    return InitScheme("xavier", 1.0, activation_after)


@dataclass
class LayerInfo:
    """One observation point: a module call or a graph node, in forward order."""

    index: int
    name: str
    kind: str
    type_name: str
    params: dict[str, str] = field(default_factory=dict)
    """Role (``weight``/``bias``) -> parameter name, for the layer's parameter-gradient columns."""
    attrs: dict[str, float] = field(default_factory=dict)
    """Hyper-parameters the verdicts need (leaky ``negative_slope``, hardtanh bounds)."""
    shape: tuple[int, ...] | None = None
    """Output shape at the first observation."""
    observable: bool = True
    note: str | None = None
    """Why a layer could not be observed, or anything else the report should say about it."""
