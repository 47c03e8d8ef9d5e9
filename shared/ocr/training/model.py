"""Conv-only CTC recogniser (no RNN: fast and simple in tract).

Input [B,1,H,W] -> conv/BN/ReLU blocks, pooled to height 1 and width W/4
(or W/(4*tsplit), each column then emitting tsplit steps) -> 1D convs over width
(context) -> linear classifier -> log_softmax.
Output [B, T, C] with T = W/4, C = 1 + len(charset), class 0 = CTC blank.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def cbr(cin, cout, k=3, s=1, p=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, p, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FreezableBN(nn.Module):
    """`freeze_bn = True`: BatchNorm keeps its running statistics in training too
    (fine-tuning a checkpoint recovered from a BN-folded ONNX file, onnx_to_pt.py)."""

    freeze_bn = False

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self


class CtcConvNet(FreezableBN):
    def __init__(self, num_classes: int, h: int = 48, w: int = 192, width: tuple = (16, 24, 48, 80, 112), ctx: int = 128,
                 seq2: int = 0, tsplit: int = 1, gctx: int = 0, rnn: int = 0, drop: tuple = ()):
        super().__init__()
        c1, c2, c3, c4, c5 = width
        assert h % 16 == 0 and w % 4 == 0
        self.features = nn.Sequential(
            cbr(1, c1, 3, 2, 1),                 # H/2, W/2
            cbr(c1, c2),
            nn.MaxPool2d(2, 2),                  # H/4, W/4
            cbr(c2, c3),
            cbr(c3, c3),
            nn.MaxPool2d((2, tsplit), (2, tsplit)),  # H/8, W/(4*tsplit)
            cbr(c3, c4),
            cbr(c4, c4),
            nn.MaxPool2d((2, 1), (2, 1)),        # H/16
            cbr(c4, c5),
        )
        # drop: indices of same-width convs (4: c3->c3, 7: c4->c4) replaced by the identity, to buy
        # time for other layers; the indices of the rest stay, so checkpoints with them still load.
        self.dropped = tuple(sorted(drop))
        for i in self.dropped:
            assert i in (4, 7), f"only features.4 and features.7 keep their width: {i}"
            self.features[i] = nn.Identity()
        hh = h // 16
        # collapse the remaining height with a full-height conv
        self.collapse = nn.Sequential(nn.Conv2d(c5, ctx, (hh, 1), 1, 0, bias=False), nn.BatchNorm2d(ctx), nn.ReLU(inplace=True))
        self.seq = nn.Sequential(
            nn.Conv2d(ctx, ctx, (1, 3), 1, (0, 1), bias=False), nn.BatchNorm2d(ctx), nn.ReLU(inplace=True),
            nn.Conv2d(ctx, ctx, (1, 3), 1, (0, 1), bias=False), nn.BatchNorm2d(ctx), nn.ReLU(inplace=True),
        )
        # optional second residual sequence block with dilation seq2 (wider context over width);
        # its last BN starts at zero so a model initialised from one without it starts identical.
        self.seq2_dilation = seq2
        if seq2:
            self.seq2 = nn.Sequential(
                nn.Conv2d(ctx, ctx, (1, 3), 1, (0, seq2), (1, seq2), bias=False), nn.BatchNorm2d(ctx), nn.ReLU(inplace=True),
                nn.Conv2d(ctx, ctx, (1, 3), 1, (0, seq2), (1, seq2), bias=False), nn.BatchNorm2d(ctx), nn.ReLU(inplace=True),
            )
            nn.init.zeros_(self.seq2[4].weight)
        # optional global context (gctx = hidden width): the average and the maximum of every feature
        # over the whole width, through two 1x1 convs, added to every step -- so each step can compare
        # its glyph with the whole image (size, weight: the cue for c/C, x/X, ...). The last conv starts
        # at zero, so a model initialised from one without it starts identical.
        self.gctx = gctx
        if gctx:
            self.gctx_mlp = nn.Sequential(nn.Conv2d(2 * ctx, gctx, 1), nn.ReLU(inplace=True), nn.Conv2d(gctx, ctx, 1))
            nn.init.zeros_(self.gctx_mlp[2].weight)
            nn.init.zeros_(self.gctx_mlp[2].bias)
        # optional bidirectional LSTM over the steps (rnn = hidden size per direction), residual: its
        # output is projected back to ctx and added; the projection starts at zero, so a model
        # initialised from one without it starts identical. Exported with a fixed batch of 1 (tract
        # runs an LSTM at batch 1; with a dynamic batch axis it fails for batch > 1).
        self.rnn_hidden = rnn
        if rnn:
            self.rnn = nn.LSTM(ctx, rnn, bidirectional=True, batch_first=True)
            self.rnn_proj = nn.Linear(2 * rnn, ctx)
            nn.init.zeros_(self.rnn_proj.weight)
            nn.init.zeros_(self.rnn_proj.bias)
        self.drop = nn.Dropout(0.1)
        # freeze_bn: BatchNorm keeps its running statistics in training too (fine-tuning a checkpoint
        # recovered from a BN-folded ONNX file, see onnx_to_pt.py)
        self.freeze_bn = False
        # tsplit > 1: the later stages run at W/(4*tsplit) columns (cheaper, so they can be wider)
        # and each column emits tsplit CTC steps, so the output is still T = W/4.
        self.tsplit = tsplit
        self.num_classes = num_classes
        self.cls = nn.Conv2d(ctx, num_classes * tsplit, 1)

    def forward(self, x):
        x = self.features(x)
        x = self.collapse(x)
        if self.gctx:
            g = torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)], 1)  # [B, 2ctx, 1, 1]
            x = x + self.gctx_mlp(g)
        x = x + self.seq(x)
        if self.seq2_dilation:
            x = x + self.seq2(x)
        if self.rnn_hidden:
            s = x.squeeze(2).permute(0, 2, 1)  # [B, T', ctx]
            s = self.rnn_proj(self.rnn(s)[0])
            x = x + s.permute(0, 2, 1).unsqueeze(2)
        x = self.drop(x)
        x = self.cls(x)            # [B, C*tsplit, 1, T/tsplit]
        if self.tsplit == 1:
            x = x.squeeze(2).permute(0, 2, 1)  # [B, T, C]
        else:
            b, _, _, tc = x.shape
            x = x.reshape(b, self.tsplit, self.num_classes, tc).permute(0, 3, 1, 2)
            x = x.reshape(b, tc * self.tsplit, self.num_classes)  # step t = column * tsplit + k
        return F.log_softmax(x, dim=-1)


def identity_init_(block: nn.Sequential) -> None:
    """Make a same-width conv/BN/ReLU block (features.4 or features.7) the identity on its input,
    which is post-ReLU and so non-negative: a centre-tap identity kernel, BatchNorm with
    running mean 0, variance 1 - eps, weight 1 and bias 0, then ReLU(x) = x. A checkpoint trained
    with that block dropped (`--drop`) then starts with the block back in, computing the same
    function, and training gives the block its own weights from there."""
    conv, bn = block[0], block[1]
    assert conv.in_channels == conv.out_channels and conv.kernel_size == (3, 3)
    with torch.no_grad():
        conv.weight.zero_()
        for c in range(conv.out_channels):
            conv.weight[c, c, 1, 1] = 1.0
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
        bn.weight.fill_(1.0)
        bn.bias.zero_()


def fold_bn(model: nn.Module) -> nn.Module:
    """Fold every Conv2d+BatchNorm2d pair (inside Sequentials) into the conv (eval mode)."""
    for name, mod in model.named_children():
        if isinstance(mod, nn.Sequential):
            new = []
            mods = list(mod)
            i = 0
            while i < len(mods):
                m = mods[i]
                if isinstance(m, nn.Conv2d) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d):
                    bn = mods[i + 1]
                    conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                                     bias=True)
                    std = torch.sqrt(bn.running_var + bn.eps)
                    wscale = bn.weight / std
                    conv.weight.data = m.weight.data * wscale.view(-1, 1, 1, 1)
                    b = m.bias.data if m.bias is not None else torch.zeros_like(bn.running_mean)
                    conv.bias.data = (b - bn.running_mean) * wscale + bn.bias
                    new.append(conv)
                    i += 2
                else:
                    new.append(fold_bn(m) if len(list(m.children())) else m)
                    i += 1
            setattr(model, name, nn.Sequential(*new))
        else:
            fold_bn(mod)
    return model


def export_checked(model: nn.Module, example: torch.Tensor, out_dir: str, onnx_name: str, cfg: dict,
                   also: tuple = ()):
    """Folds BatchNorm into a copy's convs (the caller passes that copy), exports
    it to `out_dir/onnx_name` (opset 13, legacy exporter, input "input", output
    "logprobs"), checks onnxruntime agrees with torch on `example` (and on each
    input in `also`) within 1e-3, then writes `cfg` as `out_dir/model.json`.
    Nothing is replaced unless the check passes. With inputs in `also` of
    other widths, the input's width and the output's steps are dynamic axes
    ("W", "T"): the graph of a model.json with "max_width"."""
    import json
    import os

    import numpy as np
    import onnx
    import onnxruntime as ort
    os.makedirs(out_dir, exist_ok=True)
    model.eval()
    fold_bn(model)
    model.eval()
    path = os.path.join(out_dir, onnx_name)
    tmp = path + ".tmp"
    dynamic = {"input": {3: "W"}, "logprobs": {1: "T"}} if also else None
    torch.onnx.export(model, example, tmp, input_names=["input"], output_names=["logprobs"], opset_version=13,
                      dynamo=False, do_constant_folding=True, dynamic_axes=dynamic)
    onnx.checker.check_model(onnx.load(tmp))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(tmp, so, providers=["CPUExecutionProvider"])
    diff = 0.0
    for x in (example, *also):
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {"input": x.numpy()})[0]
        assert got.shape == ref.shape, (got.shape, ref.shape)
        diff = max(diff, float(np.abs(ref - got).max()))
    assert diff < 1e-3, diff
    os.replace(tmp, path)
    with open(os.path.join(out_dir, "model.json"), "w") as f:
        json.dump(cfg, f, indent=1)
        f.write("\n")
    print(f"exported {path} ({os.path.getsize(path) / 1e6:.2f} MB), max |torch-ort| = {diff:.2e}", flush=True)
