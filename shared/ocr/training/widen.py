"""Widen a trained CtcConvNet's later convs or its BiLSTM without changing what it computes (Net2WiderNet).

  python onnx_to_pt.py ../model/captcha.onnx runs-v17/v17.pt --rnn 64 --drop 7
  python widen.py runs-v17/v17.pt runs-wide/init.pt --from-width 16,24,48,80,112 \
      --to-width 16,24,48,128,192 --rnn 64 --drop 7
  python train.py --init runs-wide/init.pt --width 16,24,48,128,192 --rnn 64 --drop 7 --freeze-bn ...
  python widen.py runs-v17/v17.pt runs-rnn25/init.pt --to-width 16,24,48,80,112 --rnn 64 --to-rnn 128

Only the convs of stage 4 (features.6, c3 -> c4) and stage 5 (features.9, c4 -> c5)
grow: they run on 240 and 120 positions of the 48x160 input, so channels there cost
the least time in tract (attempt 17's timing: 128/192 channels +20% over 80/112).
Each new channel copies an existing one (its kernel, its BatchNorm); the layer that
reads the widened one (features.9, then collapse) splits the copied channel's
weight among the copies with random shares that sum to 1, so the ReLU network
computes the same function. A small noise on the copies' own kernels (--noise,
relative to the layer's weight spread) lets them learn apart; the script prints
how far the widened model's output moves, which must stay tiny.

`--to-rnn` grows the BiLSTM's units per direction (attempt 25, `widen_rnn`): the
new units start at torch's default random init, the old units ignore them, and the
output projection gives them zero weight, so the output does not move at all.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from model import CtcConvNet  # noqa: E402
from train import CHARSET  # noqa: E402

BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def widen(sd: dict, conv: str, bn: str, reader: str, new_c: int, g: torch.Generator, noise: float) -> None:
    """Grow conv `conv` (with BatchNorm `bn`) to new_c output channels, in place in state dict sd;
    `reader` is the conv weight that takes those channels as its input."""
    w = sd[conv]
    old_c = w.shape[0]
    assert new_c >= old_c, (conv, old_c, new_c)
    src = torch.cat([torch.arange(old_c), torch.randint(0, old_c, (new_c - old_c,), generator=g)])
    new_w = w[src].clone()
    if noise > 0 and new_c > old_c:
        new_w[old_c:] += noise * w.std() * torch.randn(new_w[old_c:].shape, generator=g)
    sd[conv] = new_w
    for k in BN_KEYS:
        sd[f"{bn}.{k}"] = sd[f"{bn}.{k}"][src].clone()
    # shares: each old channel's copies split its outgoing weight, 0.7..1.3 before normalising
    share = 0.7 + 0.6 * torch.rand(new_c, generator=g)
    total = torch.zeros(old_c).index_add_(0, src, share)
    share = share / total[src]
    r = sd[reader]
    sd[reader] = (r[:, src] * share.view(1, -1, *([1] * (r.dim() - 2)))).clone()


def widen_rnn(sd: dict, new_h: int, g: torch.Generator) -> None:
    """Grow the residual BiLSTM from h to new_h units per direction, in place in state dict sd.

    The new units get torch's default LSTM init (uniform in +-1/sqrt(new_h)) for their own
    rows; the old units' recurrent weights from the new units are zero, so the old units run
    exactly as before; the output projection's columns for the new units are zero, so the
    model's output does not change. The projection's gradient for those columns is the new
    units' (non-zero) output, so they start to contribute from the first step."""
    old_h = sd["rnn.weight_hh_l0"].shape[1]
    assert new_h > old_h, (old_h, new_h)
    bound = new_h ** -0.5

    def rand(*shape):
        return (torch.rand(*shape, generator=g) * 2 - 1) * bound

    for sfx in ("_l0", "_l0_reverse"):
        wih, whh = sd[f"rnn.weight_ih{sfx}"], sd[f"rnn.weight_hh{sfx}"]
        bih, bhh = sd[f"rnn.bias_ih{sfx}"], sd[f"rnn.bias_hh{sfx}"]
        n_in = wih.shape[1]
        nwih, nwhh = rand(4 * new_h, n_in), rand(4 * new_h, new_h)
        nbih, nbhh = rand(4 * new_h), rand(4 * new_h)
        for k in range(4):  # gate blocks i, f, g, o
            o, n = slice(k * old_h, (k + 1) * old_h), slice(k * new_h, k * new_h + old_h)
            nwih[n] = wih[o]
            nwhh[n] = 0.0
            nwhh[n, :old_h] = whh[o]
            nbih[n] = bih[o]
            nbhh[n] = bhh[o]
        sd[f"rnn.weight_ih{sfx}"], sd[f"rnn.weight_hh{sfx}"] = nwih, nwhh
        sd[f"rnn.bias_ih{sfx}"], sd[f"rnn.bias_hh{sfx}"] = nbih, nbhh
    p = sd["rnn_proj.weight"]
    np_ = torch.zeros(p.shape[0], 2 * new_h)
    np_[:, :old_h] = p[:, :old_h]
    np_[:, new_h:new_h + old_h] = p[:, old_h:]
    sd["rnn_proj.weight"] = np_


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--from-width", default="16,24,48,80,112")
    ap.add_argument("--to-width", default="16,24,48,128,192")
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--rnn", type=int, default=64)
    ap.add_argument("--to-rnn", type=int, default=0, help="grow the BiLSTM to this many units per direction")
    ap.add_argument("--drop", default="7")
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=24)
    a = ap.parse_args()
    fw = tuple(int(v) for v in a.from_width.split(","))
    tw = tuple(int(v) for v in a.to_width.split(","))
    drop = tuple(int(v) for v in a.drop.split(",") if v)
    assert fw[:3] == tw[:3], "only c4 and c5 grow"
    assert 7 in drop or tw[3] == fw[3], "features.7 (c4 -> c4) must stay dropped: widening it is not implemented"
    to_rnn = a.to_rnn or a.rnn
    assert a.rnn > 0 or to_rnn == a.rnn, "--to-rnn grows an existing BiLSTM: give its size with --rnn"
    nc = 1 + len(CHARSET)
    old = CtcConvNet(nc, 48, 160, fw, a.ctx, rnn=a.rnn, drop=drop)
    old.load_state_dict(torch.load(a.src, map_location="cpu"))
    sd = {k: v.clone() for k, v in old.state_dict().items()}
    g = torch.Generator().manual_seed(a.seed)
    if tw[3] != fw[3]:
        widen(sd, "features.6.0.weight", "features.6.1", "features.9.0.weight", tw[3], g, a.noise)
    if tw[4] != fw[4]:
        widen(sd, "features.9.0.weight", "features.9.1", "collapse.0.weight", tw[4], g, a.noise)
    if to_rnn != a.rnn:
        widen_rnn(sd, to_rnn, g)
    new = CtcConvNet(nc, 48, 160, tw, a.ctx, rnn=to_rnn, drop=drop)
    new.load_state_dict(sd)
    old.eval()
    new.eval()
    x = torch.randn(8, 1, 48, 160, generator=g)
    with torch.no_grad():
        lo, ln = old(x), new(x)
    diff = float((lo - ln).abs().max())
    agree = float((lo.argmax(-1) == ln.argmax(-1)).float().mean())
    print(f"params {sum(p.numel() for p in old.parameters())} -> {sum(p.numel() for p in new.parameters())}; "
          f"max |old - new| log-prob {diff:.2e}, argmax agreement {agree:.4f}")
    if a.noise == 0 or fw == tw:  # the grown LSTM alone adds no noise: the output must not move
        assert diff < 1e-3, diff
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    torch.save(new.state_dict(), a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
