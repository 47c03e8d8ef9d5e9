"""Store an ONNX file's float weights as f16, with a Cast back to f32 in front
of each use (MODEL.md, attempt 22 part C): about half the bytes, and the same
f32 graph once the runtime folds the casts (tract does so at load).

  python onnx_f16_weights.py IN.onnx OUT.onnx

Only float32 initializers with at least --min-size elements are converted
(default 16: small tensors such as shapes stay as they are). The graph's
inputs and outputs stay f32.
"""
from __future__ import annotations

import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def convert(model: onnx.ModelProto, min_size: int = 16) -> int:
    g = model.graph
    casts, kept = [], []
    n = 0
    for init in g.initializer:
        if init.data_type != TensorProto.FLOAT or np.prod(init.dims) < min_size:
            kept.append(init)
            continue
        w = numpy_helper.to_array(init).astype(np.float16)
        half = numpy_helper.from_array(w, init.name + "_f16")
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "_to_f32"))
        n += 1
    del g.initializer[:]
    g.initializer.extend(kept)
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    return n


def float_initializers(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Every initializer by name, plus, for each Cast-to-f32 of one (what
    convert() writes), its output name with the weights back in f32: the
    weights a reader of the original graph expects."""
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        to = next((a.i for a in n.attribute if a.name == "to"), None)
        if n.op_type == "Cast" and to == TensorProto.FLOAT and n.input[0] in inits:
            inits[n.output[0]] = inits[n.input[0]].astype(np.float32)
    return inits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--min-size", type=int, default=16)
    a = ap.parse_args()
    model = onnx.load(a.src)
    n = convert(model, a.min_size)
    onnx.checker.check_model(model)
    onnx.save(model, a.dst)
    print(f"{n} initializers to f16: {a.dst}")


if __name__ == "__main__":
    main()
