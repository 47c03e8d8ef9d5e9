"""Quantize the main model's convs to int8 after training (onnxruntime's
`quantize_static`, QOperator format: QLinearConv, with the ReLUs folded into
the convs' output ranges and the max-pools run on uint8), calibrated on
training shards (MODEL.md, "Also measured: int8 convs in tract"). The
result is a model directory (`captcha.onnx` + the source's `model.json`,
version suffixed `-int8`) that `ocr-bench --model DIR` and
`evaluate.py --model-dir DIR` read.

It is kept to reproduce a measurement, not to ship: on an AVX2-only
x86-64 core tract 0.23.9 runs these int8 convs about 3x slower than the
f32 ones (its int8 kernel there emulates the dot product); on an AMX Xeon
about 1.3x slower (each quantized conv's im2col and column sums), and tract's
AMX kernel crashes there when a second thread runs the model. Only arm64's
int8 kernels are not yet measured with this model.

  python quantize_int8.py --out DIR [--model-dir ../model] [--data data/48x160-ink-w224s8]
      [--n 600] [--per-channel [--reduce-range]] [--ops Conv,Relu,MaxPool]

Calibration: `--n` images spread over the styles, taken at random (seed 35)
from the last shard of each style among those drawn at 160 columns, and
normalised as training does. The graph's input keeps its dynamic width.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
from collections import Counter

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

HERE = os.path.dirname(os.path.abspath(__file__))
STYLES = ["calc", "captcha-default", "captcha-fonts", "multicolor", "pillow", "phrase"]


def calibration_inputs(data_dir: str, n: int, width: int, seed: int = 35) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    per = max(1, n // len(STYLES))
    out = []
    for style in STYLES:
        shards = sorted(glob.glob(os.path.join(data_dir, f"{style}_*.npz")))
        if not shards:
            raise SystemExit(f"no {style}_*.npz shards in {data_dir}")
        z = np.load(shards[-1])
        idx = np.nonzero(z["w"] == width)[0] if "w" in z.files else np.arange(len(z["x"]))
        for i in rng.choice(idx, size=min(per, len(idx)), replace=False):
            x = z["x"][i, :, :width].astype(np.float32) / 255.0
            out.append(((x - 0.5) / 0.5)[None, None])
    return out


class Reader(CalibrationDataReader):
    def __init__(self, name: str, inputs: list[np.ndarray]):
        self.name, self.it = name, iter(inputs)

    def get_next(self):
        x = next(self.it, None)
        return None if x is None else {self.name: x}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=os.path.join(HERE, "..", "model"))
    ap.add_argument("--data", default=os.path.join(HERE, "data", "48x160-ink-w224s8"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--per-channel", action="store_true", help="int8 weights per output channel (default: uint8 per tensor)")
    ap.add_argument("--reduce-range", action="store_true", help="7-bit weights, against the u8 x s8 saturation on x86")
    ap.add_argument("--ops", default="Conv,Relu,MaxPool")
    a = ap.parse_args()

    with open(os.path.join(a.model_dir, "model.json")) as f:
        spec = json.load(f)
    src = os.path.join(a.model_dir, "captcha.onnx")
    name = onnx.load(src).graph.input[0].name
    inputs = calibration_inputs(a.data, a.n, spec["input_width"])
    os.makedirs(a.out, exist_ok=True)
    dst = os.path.join(a.out, "captcha.onnx")
    quantize_static(
        src, dst, Reader(name, inputs), quant_format=QuantFormat.QOperator, per_channel=a.per_channel,
        reduce_range=a.reduce_range, activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8 if a.per_channel else QuantType.QUInt8, op_types_to_quantize=a.ops.split(","))
    spec["version"] = spec["version"] + "-int8"
    with open(os.path.join(a.out, "model.json"), "w") as f:
        json.dump(spec, f, indent=1)
    ops = Counter(n.op_type for n in onnx.load(dst).graph.node)
    print(f"{len(inputs)} calibration images; {os.path.getsize(dst)} bytes; {dict(ops)}")


if __name__ == "__main__":
    main()
