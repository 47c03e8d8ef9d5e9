//! Embeds the committed model when it is there: sets `cfg(ocr_embedded_model)`
//! so `Ocr::embedded()` can `include_bytes!` it, and reports a clear error
//! (instead of failing the build) in a checkout without it.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ocr_embedded_model)");
    println!("cargo::rerun-if-changed=model/captcha.onnx");
    println!("cargo::rerun-if-changed=model/model.json");
    let dir = Path::new("model");
    if dir.join("captcha.onnx").is_file() && dir.join("model.json").is_file() {
        println!("cargo::rustc-cfg=ocr_embedded_model");
    }
}
