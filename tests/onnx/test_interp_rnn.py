"""LSTM/GRU gate order and direction handling, checked against torch.nn.LSTM/GRU (values and gradients).

ONNX orders LSTM gates i, o, f, c and GRU gates z, r, h; torch uses i, f, g, o and
r, z, n.  These tests build the ONNX node from torch weights with the documented
permutation, so a gate-order mistake in the interpreter cannot cancel out.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from gradcheck_cli.onnx import OnnxModule

LSTM_PERM = [0, 3, 1, 2]  # torch (i, f, g, o) -> onnx (i, o, f, c)
GRU_PERM = [1, 0, 2]  # torch (r, z, n) -> onnx (z, r, h)


def _reorder(w: torch.Tensor, perm: list[int]) -> torch.Tensor:
    return torch.cat([w.chunk(len(perm), 0)[i] for i in perm], 0)


def _onnx_weights(rnn: torch.nn.RNNBase, perm: list[int], dirs: int) -> dict[str, np.ndarray]:
    sfx = ["", "_reverse"][:dirs]
    g = lambda n: [getattr(rnn, n + s).detach() for s in sfx]  # noqa: E731
    w = torch.stack([_reorder(t, perm) for t in g("weight_ih_l0")])
    r = torch.stack([_reorder(t, perm) for t in g("weight_hh_l0")])
    pairs = zip(g("bias_ih_l0"), g("bias_hh_l0"))
    b = torch.stack([torch.cat([_reorder(a, perm), _reorder(c, perm)]) for a, c in pairs])
    return {"W": w.numpy(), "R": r.numpy(), "B": b.numpy()}


def _model(op: str, weights: dict[str, np.ndarray], x_shape, hidden: int, dirs: int, with_c: bool, **attrs):
    inputs = ["X", "W", "R", "B", "", "h0"] + (["c0"] if with_c else [])
    outs = ["Y", "Y_h"] + (["Y_c"] if with_c else [])
    direction = "bidirectional" if dirs == 2 else "forward"
    node = helper.make_node(op, inputs, outs, name="rnn", hidden_size=hidden, direction=direction, **attrs)
    b = x_shape[1]
    g_in = [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x_shape)),
            helper.make_tensor_value_info("h0", TensorProto.FLOAT, [dirs, b, hidden])]
    if with_c:
        g_in.append(helper.make_tensor_value_info("c0", TensorProto.FLOAT, [dirs, b, hidden]))
    g_out = [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None] * (4 if o == "Y" else 3)) for o in outs]
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    graph = helper.make_graph([node], "g", g_in, g_out, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("dirs", [1, 2])
def test_lstm_matches_torch_values_and_gradients(dirs: int) -> None:
    torch.manual_seed(0)
    hidden, seq, batch, feat = 5, 4, 3, 2
    lstm = torch.nn.LSTM(feat, hidden, bidirectional=dirs == 2)
    x = torch.randn(seq, batch, feat)
    h0, c0 = torch.randn(dirs, batch, hidden), torch.randn(dirs, batch, hidden)
    y_t, (hn_t, cn_t) = lstm(x, (h0, c0))

    om = OnnxModule(_model("LSTM", _onnx_weights(lstm, LSTM_PERM, dirs), x.shape, hidden, dirs, True))
    y, hn, cn = om(x, h0, c0)
    y_flat = y.permute(0, 2, 1, 3).reshape(seq, batch, dirs * hidden)
    torch.testing.assert_close(y_flat, y_t, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hn, hn_t, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cn, cn_t, atol=1e-5, rtol=1e-5)

    r = torch.randn(y_t.shape)
    (y_t * r).sum().backward()
    (y_flat * r).sum().backward()
    w_grad = om.initializer("W").grad
    want = torch.stack([_reorder(lstm.weight_ih_l0.grad, LSTM_PERM)]
                       + ([_reorder(lstm.weight_ih_l0_reverse.grad, LSTM_PERM)] if dirs == 2 else []))
    torch.testing.assert_close(w_grad, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dirs", [1, 2])
def test_gru_linear_before_reset_matches_torch(dirs: int) -> None:
    torch.manual_seed(1)
    hidden, seq, batch, feat = 4, 5, 2, 3
    gru = torch.nn.GRU(feat, hidden, bidirectional=dirs == 2)
    x = torch.randn(seq, batch, feat)
    h0 = torch.randn(dirs, batch, hidden)
    y_t, hn_t = gru(x, h0)
    om = OnnxModule(_model("GRU", _onnx_weights(gru, GRU_PERM, dirs), x.shape, hidden, dirs, False,
                           linear_before_reset=1))
    y, hn = om(x, h0)
    torch.testing.assert_close(y.permute(0, 2, 1, 3).reshape(seq, batch, -1), y_t, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hn, hn_t, atol=1e-5, rtol=1e-5)
    (y.sum() + hn.sum()).backward()
    (y_t.sum() + hn_t.sum()).backward()
    want = _reorder(gru.weight_hh_l0.grad, GRU_PERM)
    torch.testing.assert_close(om.initializer("R").grad[0], want, atol=1e-5, rtol=1e-5)


def test_reverse_direction_runs_backwards() -> None:
    """direction=reverse on a sequence equals forward on the time-reversed sequence."""
    torch.manual_seed(2)
    lstm = torch.nn.LSTM(2, 3)
    w = _onnx_weights(lstm, LSTM_PERM, 1)
    x = torch.randn(6, 1, 2)
    fwd = OnnxModule(_model("LSTM", w, x.shape, 3, 1, True))
    m = _model("LSTM", w, x.shape, 3, 1, True)
    for a in m.graph.node[0].attribute:
        if a.name == "direction":
            a.s = b"reverse"
    rev = OnnxModule(m)
    h0 = c0 = torch.zeros(1, 1, 3)
    y_rev = rev(x, h0, c0)[0]
    y_fwd = fwd(x.flip(0), h0, c0)[0]
    torch.testing.assert_close(y_rev, y_fwd.flip(0))


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_variable_sequence_lens_match_onnxruntime(op: str) -> None:
    """Entries shorter than the sequence: zero outputs past their length, frozen state, and the
    reverse direction starting at each entry's own last step."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    hidden, seq, batch, feat, dirs = 3, 5, 3, 2, 2
    w = {"W": rng.standard_normal((dirs, gates * hidden, feat)).astype(np.float32),
         "R": rng.standard_normal((dirs, gates * hidden, hidden)).astype(np.float32),
         "B": rng.standard_normal((dirs, 2 * gates * hidden)).astype(np.float32)}
    lens = np.array([5, 2, 3], np.int32)
    node = helper.make_node(op, ["X", "W", "R", "B", "L"], ["Y", "Y_h"], hidden_size=hidden, direction="bidirectional")
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [seq, batch, feat]),
         helper.make_tensor_value_info("L", TensorProto.INT32, [batch])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [seq, dirs, batch, hidden]),
         helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [dirs, batch, hidden])],
        [numpy_helper.from_array(v, k) for k, v in w.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    x = rng.standard_normal((seq, batch, feat)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"X": x, "L": lens})
    with torch.no_grad():
        got = OnnxModule(model)(torch.from_numpy(x), torch.from_numpy(lens))
    for g, e in zip(got, want):
        np.testing.assert_allclose(g.numpy(), e, atol=1e-5, rtol=1e-5)
