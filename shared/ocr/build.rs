//! Embeds the committed models when they are there: sets `cfg(ocr_embedded_model)`
//! (and `cfg(ocr_embedded_cells)` for the glyph-cell reader in `model-cells/`)
//! so `Ocr::embedded()` can `include_bytes!` them, and reports a clear error
//! (instead of failing the build) in a checkout without the main model.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ocr_embedded_model)");
    println!("cargo::rustc-check-cfg=cfg(ocr_embedded_cells)");
    for file in ["model/captcha.onnx", "model/model.json", "model-cells/cells.onnx", "model-cells/model.json"] {
        println!("cargo::rerun-if-changed={file}");
    }
    let complete =
        |dir: &str, onnx: &str| Path::new(dir).join(onnx).is_file() && Path::new(dir).join("model.json").is_file();
    if complete("model", "captcha.onnx") {
        println!("cargo::rustc-cfg=ocr_embedded_model");
    }
    if complete("model-cells", "cells.onnx") {
        println!("cargo::rustc-cfg=ocr_embedded_cells");
    }
}
