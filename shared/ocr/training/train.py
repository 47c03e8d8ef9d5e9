"""Train the CTC OCR model and export model/captcha.onnx + model/model.json.

One command:
  python train.py --minutes 60            # generates data if missing, trains, exports
  python train.py --minutes 60 --no-gen   # train on whatever shards exist (re-scanned each epoch,
                                          # so a background gen_data.py can keep adding)

Env: OMP_WAIT_POLICY=PASSIVE (set below), torch.set_num_threads(--threads, default 2).
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import random
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen  # noqa: E402
from gen_data import generate, shard_dir  # noqa: E402
from model import CtcConvNet, export_checked, identity_init_  # noqa: E402
from preprocess import CHARSET, CROP_MODES, MEAN, STD, RESIZE_MODES, InputSpec, canvas_u8  # noqa: E402

MODEL_DIR = os.path.normpath(os.path.join(HERE, "..", "model"))
RUNS = os.path.join(HERE, "runs")
CH2I = {c: i + 1 for i, c in enumerate(CHARSET)}
VAL_SEED = 7777  # in-training held-out check (the committed sets use other seeds)


def encode(label: str):
    return [CH2I[c] for c in label]


def greedy_decode(logp: np.ndarray) -> str:
    best = logp.argmax(-1)
    out, prev = [], 0
    for b in best:
        if b != prev and b != 0:
            out.append(CHARSET[b - 1])
        prev = b
    return "".join(out)


def load_shards(spec: InputSpec):
    """Every shard of the spec: canvases [N, H, max_w or w] (uint8), labels, styles, and
    each canvas's own width (shards of a max_w spec store it; others are all spec.w)."""
    files = sorted(glob.glob(os.path.join(shard_dir(spec), "*.npz")))
    files = [f for f in files if not f.endswith(".tmp.npz")]
    xs, ys, styles, ws = [], [], [], []
    for f in files:
        try:
            d = np.load(f)
            x = d["x"]
            xs.append(x)
            ys.extend([str(s) for s in d["y"]])
            styles.extend([os.path.basename(f).rsplit("_", 1)[0]] * len(x))
            ws.append(d["w"] if "w" in d else np.full(len(x), x.shape[2], np.int32))
        except Exception as e:  # shard being written
            print("skip", f, e)
    if not xs:
        return None, [], [], None
    return np.concatenate(xs), ys, styles, np.concatenate(ws)


def width_batches(order: np.ndarray, widths: np.ndarray, batch: int, group: int = 64) -> list:
    """Batches of indices from `order` (in groups of `group` batches, each group sorted by
    canvas width, then its batches shuffled), so that a batch's canvases are about
    equally wide and little padding is trained on that inference never shows. With
    one width it is `order` cut into batches."""
    out = []
    n = len(order) - len(order) % batch
    for g0 in range(0, n, batch * group):
        chunk = order[g0:min(n, g0 + batch * group)]
        mixed = len(np.unique(widths[chunk])) > 1
        if mixed:
            chunk = chunk[np.argsort(widths[chunk], kind="stable")]
        bs = [chunk[i:i + batch] for i in range(0, len(chunk), batch)]
        if mixed:
            np.random.shuffle(bs)
        out.extend(bs)
    return out


def sample_order(styles, weights: str):
    """One epoch of sample indices: a permutation, or (with weights) len(styles) draws
    with replacement so that each style gets its given share of the batches."""
    n = len(styles)
    if not weights:
        return np.random.permutation(n)
    st = np.array(styles)
    counts = {s: int((st == s).sum()) for s in set(styles)}
    share = {s: c / n for s, c in counts.items()}
    given = {k: float(v) for k, v in (kv.split("=") for kv in weights.split(","))}
    rest = 1.0 - sum(given.values())
    free = sum(share[s] for s in share if s not in given)
    p_style = {s: given.get(s, share[s] / free * rest if free else 0.0) for s in share}
    p = np.array([p_style[s] / counts[s] for s in styles])
    return np.random.choice(n, size=n, replace=True, p=p / p.sum())


def make_val(spec: InputSpec, n_per_style=150):
    xs, ys, ss, ws = [], [], [], []
    for s in gen.STYLES:
        for i in range(n_per_style):
            img, t = gen.make_sample(s, VAL_SEED, i)
            x, cw = canvas_u8(img, spec, spec.max_w or spec.w)
            xs.append(x)
            ws.append(cw)
            ys.append(t)
            ss.append(s)
    return np.stack(xs), ys, ss, np.array(ws)


def augment(xb: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """xb float [B,1,H,W] in 0..1. Mild blur/noise/contrast: robustness to resize differences."""
    B = xb.shape[0]
    # random blur on a third of the batch
    k = torch.tensor([[1., 2., 1.], [2., 4., 2.], [1., 2., 1.]]) / 16
    blurred = F.conv2d(F.pad(xb, (1, 1, 1, 1), mode="replicate"), k.view(1, 1, 3, 3))
    m = (torch.rand(B, 1, 1, 1, generator=g) < 0.3).float()
    xb = m * blurred + (1 - m) * xb
    # contrast / brightness
    c = 1 + (torch.rand(B, 1, 1, 1, generator=g) - 0.5) * 0.5
    b = (torch.rand(B, 1, 1, 1, generator=g) - 0.5) * 0.2
    mean = xb.mean(dim=(2, 3), keepdim=True)
    xb = (xb - mean) * c + mean + b
    # gaussian noise
    sig = torch.rand(B, 1, 1, 1, generator=g) * 0.04
    xb = xb + torch.randn(xb.shape, generator=g) * sig
    # occasional inversion (light text on dark)
    inv = (torch.rand(B, 1, 1, 1, generator=g) < 0.05).float()
    xb = inv * (1 - xb) + (1 - inv) * xb
    return xb.clamp(0, 1)


def shift_batch(xb: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Moves [B,C,H,W] by (dy, dx) pixels, repeating the edge: the Rust engine's
    test-time shift (`preprocess::shift_planes`), out[y, x] = in[y - dy, x - dx]."""
    h, w = xb.shape[-2:]
    iy = (torch.arange(h) - dy).clamp(0, h - 1)
    ix = (torch.arange(w) - dx).clamp(0, w - 1)
    return xb[:, :, iy][:, :, :, ix]


def parse_shifts(text: str) -> list:
    """"dy,dx;dy,dx;..." -> [(dy, dx), ...]."""
    return [tuple(int(v) for v in part.split(",")) for part in text.split(";") if part]


def teacher_graph(ckpt: str, student: dict) -> dict:
    """The --distill teacher's graph: from the summary.json train.py wrote beside its
    checkpoint (another graph may teach: attempt 34's larger reader), else the student's."""
    path = os.path.join(os.path.dirname(os.path.abspath(ckpt)), "summary.json")
    if not os.path.exists(path):
        return dict(student)
    with open(path) as f:
        s = json.load(f)
    return {"width": tuple(s["width"]), "ctx": s["ctx"], "seq2": s.get("seq2", 0), "tsplit": s.get("tsplit", 1),
            "gctx": s.get("gctx", 0), "rnn": s.get("rnn", 0), "drop": tuple(s.get("drop", ()))}


def evaluate(model, vx, vy, vs, vw, bs=256):
    """The in-training check: greedy decodes, each canvas read at its own width."""
    model.eval()
    preds = [""] * len(vx)
    with torch.no_grad():
        for cw in np.unique(vw):
            idx = np.flatnonzero(vw == cw)
            for i in range(0, len(idx), bs):
                part = idx[i:i + bs]
                xb = torch.from_numpy(vx[part, :, :cw]).float().unsqueeze(1) / 255.0
                lp = model((xb - MEAN) / STD).numpy()
                for j, p in zip(part, lp):
                    preds[j] = greedy_decode(p)
    res = {}
    for s in gen.STYLES:
        idx = [i for i in range(len(vy)) if vs[i] == s]
        if idx:
            res[s] = (sum(preds[i] == vy[i] for i in idx) / len(idx),
                      sum(preds[i].lower() == vy[i].lower() for i in idx) / len(idx))
    model.train()
    return res


def report(what: str, res: dict) -> float:
    """Prints a check result (exact/case-insensitive per style); returns the mean exact over styles."""
    score = float(np.mean([r[0] for r in res.values()]))
    print(f"{what}: mean {score:.4f} " + " ".join(f"{k}={v[0]:.3f}/{v[1]:.3f}" for k, v in res.items()), flush=True)
    return score


def export(model, spec: InputSpec, out_dir, version):
    h, w = spec.h, spec.w
    m = CtcConvNet(1 + len(CHARSET), h, w, model.width, model.ctx, model.seq2_dilation, model.tsplit, model.gctx, model.rnn_hidden,
                    model.dropped)
    m.load_state_dict(model.state_dict())
    x = torch.randn(1, 1, h, w)
    cfg = {"input_height": h, "input_width": w, "charset": CHARSET, "blank": 0, "mean": spec.mean, "std": spec.std,
           "version": version, **spec.optional_keys()}
    # with max_width: a graph of any width, checked at every canvas width
    also = tuple(torch.randn(1, 1, h, cw) for cw in spec.widths()[1:])
    export_checked(m, x, out_dir, "captcha.onnx", cfg, also)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60, help="wall-time budget for the training loop")
    ap.add_argument("--per-style", type=int, default=40000, help="data size if generating")
    ap.add_argument("--gen-workers", type=int, default=2)
    ap.add_argument("--no-gen", action="store_true")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--init", default="", help="checkpoint to start from")
    ap.add_argument("--out", default=MODEL_DIR, help="export dir (model/ by default)")
    ap.add_argument("--version", default="")
    ap.add_argument("--width", default="16,24,48,80,112")
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--seq2", type=int, default=0, help="dilation of an extra residual sequence block (0 = none)")
    ap.add_argument("--style-weights", default="",
                    help="sampling share per style, e.g. multicolor=0.25,pillow=0.19 (others: their share of the data)")
    ap.add_argument("--gctx", type=int, default=0,
                    help="hidden width of a global-context block (avg+max over the width, added to every step; 0 = none)")
    ap.add_argument("--rnn", type=int, default=0,
                    help="hidden size of a residual bidirectional LSTM over the steps (0 = none)")
    ap.add_argument("--freeze-bn", action="store_true",
                    help="keep BatchNorm statistics fixed (fine-tuning a checkpoint made by onnx_to_pt.py)")
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--tsplit", type=int, default=1,
                    help="run the later stages at W/(4*tsplit) columns, each emitting tsplit CTC steps")
    ap.add_argument("--drop", default="",
                    help="features convs to replace by the identity, e.g. 7 (c4->c4) or 4,7 (see model.py)")
    ap.add_argument("--run-dir", default=RUNS, help="checkpoints (best.pt, last.pt, state.pt, summary.json)")
    ap.add_argument("--resume", action="store_true",
                    help="continue from run-dir/state.pt (model, optimiser, step, elapsed time of the same budget)")
    ap.add_argument("--export-only", default="", help="export this checkpoint (e.g. runs/best.pt) and exit")
    ap.add_argument("--resize", default="fit", choices=RESIZE_MODES,
                    help="the contract's resize step (preprocess.py); written to model.json")
    ap.add_argument("--max-squeeze", type=float, default=None,
                    help="fill-height: squeeze a wide image by at most this much; written to model.json")
    ap.add_argument("--crop", default="none", choices=CROP_MODES,
                    help="the contract's crop step (preprocess.py); written to model.json")
    ap.add_argument("--max-width", type=int, default=None,
                    help="resize fit: wide text gets a canvas up to this wide (preprocess.py step 3b; "
                         "attempt 27); written to model.json, and the graph is exported with a dynamic width")
    ap.add_argument("--width-step", type=int, default=8, help="with --max-width: the canvas widths' step")
    ap.add_argument("--lr-mult", default="",
                    help="PREFIX=MULT,...: parameters whose name starts with PREFIX train at MULT x the lr "
                         "(attempt 25: `rnn=3` trains a grown BiLSTM and its projection faster than the pretrained convs)")
    ap.add_argument("--bf16", action="store_true",
                    help="forward pass under bfloat16 autocast (weights, optimiser and loss stay float32): "
                         "~1.4x the steps on a CPU with AMX, such as the Xeons of these machines")
    ap.add_argument("--distill", default="",
                    help="teacher checkpoint, its graph from the summary.json beside it (else the student's "
                         "--width/--rnn/--drop...): the loss adds "
                         "--distill-weight x the per-step KL from the teacher's readings of the batch at each "
                         "--distill-shifts, combined as the normalised mean of their log-probabilities")
    ap.add_argument("--distill-shifts", default="0,0;1,0;-1,0;0,1;0,-1",
                    help="the teacher's (dy,dx) readings; the default is the engine's one run plus model.json's "
                         "tta_shifts")
    ap.add_argument("--distill-weight", type=float, default=1.0)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    np.random.seed(a.seed)
    spec = InputSpec(mean=MEAN, std=STD, resize=a.resize, max_squeeze=a.max_squeeze, crop=a.crop, max_w=a.max_width,
                     w_step=a.width_step)
    h, w = spec.h, spec.w
    if not a.no_gen and not a.export_only:
        generate(a.per_style, a.gen_workers, spec=spec)

    runs = a.run_dir
    os.makedirs(runs, exist_ok=True)
    width = tuple(int(v) for v in a.width.split(","))
    drop = tuple(int(v) for v in a.drop.split(",") if v)
    model = CtcConvNet(1 + len(CHARSET), h, w, width, a.ctx, a.seq2, a.tsplit, a.gctx, a.rnn, drop)
    model.width, model.ctx = width, a.ctx
    if a.init:
        sd = torch.load(a.init, map_location="cpu")
        own = model.state_dict()
        for k in ("cls.weight", "cls.bias"):
            # a tsplit-1 classifier starting a tsplit-k model: each of the k sub-steps starts as it
            if k in sd and sd[k].shape != own[k].shape and own[k].shape[0] == sd[k].shape[0] * a.tsplit:
                sd[k] = sd[k].repeat(a.tsplit, *([1] * (sd[k].dim() - 1)))
        sd = {k: v for k, v in sd.items() if not any(k.startswith(f"features.{i}.") for i in drop)}
        missing, unexpected = model.load_state_dict(sd, strict=False)
        # a same-width conv the init checkpoint had dropped (`--drop 7` before, not now) comes back
        # as the identity, so the model starts computing the checkpoint's function
        back = sorted({int(k.split(".")[1]) for k in missing if k.startswith("features.")})
        for i in back:
            assert i in (4, 7) and i not in drop, f"features.{i} is missing from {a.init}"
            identity_init_(model.features[i])
        missing = [k for k in missing if not k.startswith("features.")]
        assert not unexpected and all(k.startswith(("seq2.", "gctx_mlp.", "rnn.", "rnn_proj.")) for k in missing), (missing, unexpected)
        if back:
            print(f"init: features {back} back in as the identity", flush=True)
        print(f"init from {a.init}; new: {sorted(set(k.split('.')[0] for k in missing))}", flush=True)
    if a.export_only:
        model.load_state_dict(torch.load(a.export_only, map_location="cpu"))
        export(model, spec, a.out, a.version or time.strftime("ctc-conv-%Y%m%d-%H%M", time.gmtime()))
        return
    teacher, shifts = None, parse_shifts(a.distill_shifts)
    if a.distill:
        tg = teacher_graph(a.distill, {"width": width, "ctx": a.ctx, "seq2": a.seq2, "tsplit": a.tsplit,
                                       "gctx": a.gctx, "rnn": a.rnn, "drop": drop})
        teacher = CtcConvNet(1 + len(CHARSET), h, w, tg["width"], tg["ctx"], tg["seq2"], tg["tsplit"], tg["gctx"],
                             tg["rnn"], tg["drop"])
        teacher.load_state_dict(torch.load(a.distill, map_location="cpu"))
        print(f"teacher graph {tg}", flush=True)
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        print(f"distilling from {a.distill} read at shifts {shifts}, weight {a.distill_weight}", flush=True)
    model.freeze_bn = a.freeze_bn
    model.train()
    nparams = sum(p.numel() for p in model.parameters())
    print(f"params {nparams}", flush=True)
    mults = [(k, float(v)) for k, v in (kv.split("=") for kv in a.lr_mult.split(",") if kv)]
    groups: dict = {}
    for name, p in model.named_parameters():
        m = next((v for k, v in mults if name.startswith(k)), 1.0)
        groups.setdefault(m, []).append(p)
    opt = torch.optim.AdamW([{"params": ps, "mult": m} for m, ps in sorted(groups.items())], lr=a.lr,
                            weight_decay=1e-4)
    if mults:
        print("lr multipliers: " + ", ".join(f"{m} x {sum(p.numel() for p in ps)} params"
                                              for m, ps in sorted(groups.items())), flush=True)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)

    vx, vy, vs, vw = make_val(spec)
    x, y, styles, xw = load_shards(spec)
    while x is None or len(set(styles)) < len(gen.STYLES):  # a background gen_data.py is still starting
        time.sleep(10)
        x, y, styles, xw = load_shards(spec)
    if spec.max_w is not None:
        print("canvas widths: " + ", ".join(f"{cw}: {n}" for cw, n in zip(*np.unique(xw, return_counts=True))),
              flush=True)
    print(f"train samples {len(y)}", flush=True)
    g = torch.Generator().manual_seed(a.seed)
    t0 = time.time()
    budget = a.minutes * 60
    step, best, epoch = 0, -1.0, 0
    ckpt = os.path.join(runs, "best.pt")
    state_path = os.path.join(runs, "state.pt")
    if a.resume:
        st = torch.load(state_path, map_location="cpu")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, best = st["step"], st["best"]
        t0 -= st["elapsed"]
        print(f"resumed at step {step} ({st['elapsed']:.0f}s of {budget:.0f}s), best {best:.4f}", flush=True)
    if a.init and not a.resume:
        report("eval step 0 (init)", evaluate(model, vx, vy, vs, vw))
    done = False
    while not done:
        epoch += 1
        if epoch > 1:
            nx, ny, ns, nw = load_shards(spec)
            if nx is not None and len(ny) > len(y):
                x, y, styles, xw = nx, ny, ns, nw
                print(f"epoch {epoch}: train samples {len(y)}", flush=True)
        perm = sample_order(styles, a.style_weights)
        for idx in width_batches(perm, xw, a.batch):
            frac = (time.time() - t0) / budget
            if frac >= 1:
                done = True
                break
            # warmup then cosine over the wall-time budget
            lr = a.lr * min(1.0, (step + 1) / a.warmup) * (0.5 * (1 + math.cos(math.pi * min(frac, 1.0))) * 0.97 + 0.03)
            for pg in opt.param_groups:
                pg["lr"] = lr * pg.get("mult", 1.0)
            bw = int(xw[idx].max())
            T = bw // 4
            xb = torch.from_numpy(x[idx, :, :bw]).float().unsqueeze(1) / 255.0
            xb = augment(xb, g)
            xb = (xb - MEAN) / STD
            labels = [y[j] for j in idx]
            tgt = torch.tensor([c for l in labels for c in encode(l)], dtype=torch.long)
            tl = torch.tensor([len(l) for l in labels], dtype=torch.long)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
                lp = model(xb)  # [B,T,C]
            lp = lp.float()
            loss = ctc(lp.permute(1, 0, 2), tgt, torch.full((len(idx),), T, dtype=torch.long), tl)
            if teacher is not None:
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
                    t_lp = torch.stack([teacher(shift_batch(xb, dy, dx)).float() for dy, dx in shifts])
                t_lp = t_lp.mean(0).log_softmax(-1)
                kl = (t_lp.exp() * (t_lp - lp)).sum(-1).mean()
                loss_ctc = loss
                loss = loss + a.distill_weight * kl
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step += 1
            if step % 100 == 0:
                parts = f" (ctc {loss_ctc.item():.4f} kl {kl.item():.4f})" if teacher is not None else ""
                print(f"step {step} loss {loss.item():.4f}{parts} lr {lr:.2e} t {time.time() - t0:.0f}s", flush=True)
            if step % a.eval_every == 0:
                score = report(f"eval step {step}", evaluate(model, vx, vy, vs, vw))
                torch.save(model.state_dict(), os.path.join(runs, "last.pt"))
                if score > best:
                    best = score
                    torch.save(model.state_dict(), ckpt)
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "best": best,
                            "elapsed": time.time() - t0}, state_path)
    score = report(f"final step {step}", evaluate(model, vx, vy, vs, vw))
    torch.save(model.state_dict(), os.path.join(runs, "last.pt"))
    if score >= best:
        best = score
        torch.save(model.state_dict(), ckpt)
    model.load_state_dict(torch.load(ckpt, map_location="cpu"))
    version = a.version or time.strftime("ctc-conv-%Y%m%d-%H%M", time.gmtime())
    export(model, spec, a.out, version)
    with open(os.path.join(runs, "summary.json"), "w") as f:
        json.dump({"steps": step, "best_mean_exact_inner_val": best, "params": nparams, "minutes": a.minutes,
                   "train_samples": len(y), "wall_s": time.time() - t0, "width": width, "ctx": a.ctx,
                   "batch": a.batch, "lr": a.lr, "seq2": a.seq2, "tsplit": a.tsplit, "gctx": a.gctx, "rnn": a.rnn, "lr_mult": a.lr_mult, "drop": list(drop), "freeze_bn": a.freeze_bn, "style_weights": a.style_weights, "crop": a.crop, "max_width": a.max_width, "width_step": a.width_step, "bf16": a.bf16,
                   "init": a.init, "distill": a.distill, "distill_shifts": a.distill_shifts,
                   "distill_weight": a.distill_weight}, f, indent=1)


if __name__ == "__main__":
    main()
