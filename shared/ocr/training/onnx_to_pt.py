"""Recover a training checkpoint from a shipped ONNX model (BatchNorm folded at export).

  python onnx_to_pt.py ../model/captcha.onnx runs-v1/best.pt [--width 16,24,48,80,112 --ctx 128]
  python onnx_to_pt.py ../model/captcha.onnx runs-slim8/best.pt --rnn 64 --drop 7   # the BiLSTM models (v7, v8)
  python onnx_to_pt.py ../model-cells/cells.onnx runs-cells20/init.pt --cells   # the cell reader (attempt 20)

Each folded conv's weight goes back into its conv; its bias into the following
BatchNorm's shift, with that BatchNorm set to the identity (mean 0, var 1 - eps,
scale 1). A bidirectional LSTM goes back from ONNX's gate order (i, o, f, c) to
torch's (i, f, g, o), and its output projection from MatMul + Add to the Linear.
The checkpoint computes exactly the ONNX function in eval mode; fine-tune
it with `train.py --init <it> --freeze-bn` so the BatchNorm statistics stay put.
With `--cells`, the model is train_cells.py's CellNet (cell size, arch and
widths read from the conv shapes beside the ONNX file's model.json) and its
last Gemm goes back into the Linear; fine-tune it with `train_cells.py --init
<it> --freeze-bn`.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import onnx
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from model import CtcConvNet  # noqa: E402
from onnx_f16_weights import float_initializers  # noqa: E402
from train import CHARSET  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnx")
    ap.add_argument("out")
    ap.add_argument("--width", default="16,24,48,80,112")
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--rnn", type=int, default=0, help="BiLSTM hidden size per direction (as train.py --rnn)")
    ap.add_argument("--drop", default="", help="dropped convs (as train.py --drop)")
    ap.add_argument("--cells", action="store_true", help="the glyph-cell reader (train_cells.py's CellNet)")
    a = ap.parse_args()
    g = onnx.load(a.onnx).graph
    inits = float_initializers(g)  # f16-stored weights (onnx_f16_weights.py) come back as f32
    convs = [(inits[n.input[1]], inits[n.input[2]] if len(n.input) > 2 else None) for n in g.node if n.op_type == "Conv"]
    if a.cells:
        model, shape = cell_net(a.onnx, convs)
    else:
        drop = tuple(int(v) for v in a.drop.split(",") if v)
        model = CtcConvNet(1 + len(CHARSET), 48, 160, tuple(int(v) for v in a.width.split(",")), a.ctx, rnn=a.rnn,
                           drop=drop)
        shape = (1, 48, 160)
    mods = list(model.modules())
    pairs = []  # (conv, following BatchNorm or None), in definition order = graph order
    for i, m in enumerate(mods):
        if isinstance(m, torch.nn.Conv2d):
            nxt = mods[i + 1] if i + 1 < len(mods) and isinstance(mods[i + 1], torch.nn.BatchNorm2d) else None
            pairs.append((m, nxt))
    assert len(pairs) == len(convs), (len(pairs), len(convs))
    with torch.no_grad():
        for (conv, bn), (w, b) in zip(pairs, convs):
            assert tuple(conv.weight.shape) == w.shape, (conv.weight.shape, w.shape)
            conv.weight.copy_(torch.from_numpy(w))
            bias = torch.from_numpy(b if b is not None else np.zeros(w.shape[0], np.float32))
            if bn is None:
                conv.bias.copy_(bias)
            else:
                bn.weight.fill_(1.0)
                bn.bias.copy_(bias)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
        if a.rnn:
            load_rnn(model, g, inits)
        if a.cells:
            load_gemm(model.cls, g, inits)
    model.eval()
    import onnxruntime as ort
    x = torch.randn(4, *shape)
    sess = ort.InferenceSession(a.onnx, providers=["CPUExecutionProvider"])
    got = np.concatenate([sess.run(None, {"input": x[i:i + 1].numpy()})[0] for i in range(4)])
    with torch.no_grad():
        diff = float(np.abs(model(x).numpy() - got).max())
    assert diff < 1e-3, diff
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    torch.save(model.state_dict(), a.out)
    print(f"wrote {a.out}: max |torch - onnx| = {diff:.2e}")


def cell_net(path, convs):
    """The CellNet whose convs have these shapes: arch "deep" has six convs, the
    first with stride 2 (widths c1, c2, c3, c4), arch "v2" five."""
    import json

    from train_cells import CellNet
    with open(os.path.join(os.path.dirname(os.path.abspath(path)), "model.json")) as f:
        size = json.load(f)["cell_size"]
    outs = [w.shape[0] for w, _ in convs]
    if len(outs) == 6:
        width, arch = (outs[0], outs[1], outs[2], outs[4]), "deep"
    else:
        width, arch = tuple(outs), "v2"
    print(f"cells: size {size}, arch {arch}, width {width}")
    return CellNet(size, width, arch), (3, size, size)


def load_gemm(linear, g, inits):
    """The classifier: Gemm(x, W, b) with transB=1 (torch's Linear export)."""
    (gemm,) = [n for n in g.node if n.op_type == "Gemm"]
    assert any(at.name == "transB" and at.i == 1 for at in gemm.attribute)
    linear.weight.copy_(torch.from_numpy(inits[gemm.input[1]]))
    linear.bias.copy_(torch.from_numpy(inits[gemm.input[2]]))


def load_rnn(model, g, inits):
    """The bidirectional LSTM node and the projection after it (MatMul by W^T, then + bias)."""
    (lstm,) = [n for n in g.node if n.op_type == "LSTM"]
    w, r, b = (inits[lstm.input[i]] for i in (1, 2, 3))
    hid = model.rnn_hidden
    assert w.shape == (2, 4 * hid, model.rnn.input_size), w.shape

    def torch_gates(m):  # ONNX rows i, o, f, c -> torch rows i, f, g(=c), o
        i, o, f, c = np.split(m, 4, axis=0)
        return torch.from_numpy(np.concatenate([i, f, c, o], axis=0).copy())

    for d, sfx in ((0, ""), (1, "_reverse")):
        getattr(model.rnn, f"weight_ih_l0{sfx}").copy_(torch_gates(w[d]))
        getattr(model.rnn, f"weight_hh_l0{sfx}").copy_(torch_gates(r[d]))
        getattr(model.rnn, f"bias_ih_l0{sfx}").copy_(torch_gates(b[d][:4 * hid]))
        getattr(model.rnn, f"bias_hh_l0{sfx}").copy_(torch_gates(b[d][4 * hid:]))
    (mm,) = [n for n in g.node if n.op_type == "MatMul"]
    model.rnn_proj.weight.copy_(torch.from_numpy(inits[mm.input[1]].T.copy()))
    model.rnn_proj.bias.copy_(torch.from_numpy(inits["rnn_proj.bias"]))


if __name__ == "__main__":
    main()
