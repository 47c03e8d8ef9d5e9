//! What the cell reader costs: `CellReader::read` (cut, resize, features and
//! one model run per cell) over the multicolor validation strips, one
//! thread, per image and per cell.
//!
//! `cargo run --release -p captcha-ocr --example cells_profile [-- CELLS_DIR]`

use std::path::Path;
use std::time::{Duration, Instant};

use captcha_ocr::cells::{cell_u8, features, split};
use captcha_ocr::preprocess::decode_rgb;
use captcha_ocr::{CellReader, Charset, ImageLimits};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ocr_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::args().nth(1).map_or_else(|| ocr_dir.join("model-cells"), Into::into);
    let reader = CellReader::from_files(dir.join("cells.onnx"), dir.join("model.json"))?;
    let main: serde_json::Value = serde_json::from_slice(&std::fs::read(ocr_dir.join("model/model.json"))?)?;
    let map = reader.map_onto(&Charset::new(main["charset"].as_str().unwrap_or_default())?)?;
    let val = ocr_dir.join("validation/multicolor");
    let mut images = Vec::new();
    for line in std::fs::read_to_string(val.join("labels.tsv"))?.lines() {
        if let Some((file, _)) = line.split_once('\t') {
            images.push(decode_rgb(&std::fs::read(val.join(file))?, &ImageLimits::default())?);
        }
    }
    let cells: usize = images.iter().filter_map(|rgb| split(rgb, reader.spec())).map(|s| s.columns.len()).sum();
    for rgb in images.iter().take(20) {
        reader.read(rgb, &map)?;
    }
    let mut times: Vec<Duration> = Vec::with_capacity(images.len());
    for _ in 0..3 {
        for rgb in &images {
            let t = Instant::now();
            reader.read(rgb, &map)?;
            times.push(t.elapsed());
        }
    }
    let mut cut = Duration::ZERO;
    for rgb in &images {
        let t = Instant::now();
        if let Some(strip) = split(rgb, reader.spec()) {
            for i in 0..strip.columns.len() {
                let mut c = cell_u8(rgb, &strip, i, reader.spec().cell_size);
                features(&mut c);
                std::hint::black_box(&c);
            }
        }
        cut += t.elapsed();
    }
    println!(
        "the cut alone (band, cells, resize, features): {:.3} ms per image on average",
        cut.as_secs_f64() * 1e3 / images.len() as f64
    );
    let total: Duration = times.iter().sum();
    times.sort();
    let q = |p: f64| times[((times.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!(
        "{} ({}px): {} strips, {cells} cells; per image p50 {:.3} ms, p95 {:.3} ms; per cell {:.3} ms",
        reader.spec().version,
        reader.spec().cell_size,
        images.len(),
        q(0.5),
        q(0.95),
        total.as_secs_f64() * 1e3 / (3 * cells) as f64
    );
    Ok(())
}
