//! Where the model's time goes: per-node timings of the optimised tract plan,
//! and a fresh state per run against one reused state.
//!
//! `cargo run --release -p captcha-ocr --example model_profile [-- MODEL_DIR]`

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::eval;

fn main() -> TractResult<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/model").into());
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(format!("{dir}/model.json"))?)?;
    let (h, w) =
        (spec["input_height"].as_u64().unwrap_or(0) as usize, spec["input_width"].as_u64().unwrap_or(0) as usize);
    let plan = tract_onnx::onnx()
        .model_for_path(format!("{dir}/captcha.onnx"))?
        .with_input_fact(0, f32::fact([1, 1, h, w]).into())?
        .into_optimized()?
        .into_runnable()?;
    let input: TValue = Tensor::from_shape(&[1, 1, h, w], &vec![0.1f32; h * w])?.into();
    let runs = 500;

    for _ in 0..50 {
        plan.run(tvec!(input.clone()))?;
    }
    let t = Instant::now();
    for _ in 0..runs {
        plan.run(tvec!(input.clone()))?;
    }
    println!("plan.run (fresh state): {:.3} ms/run", t.elapsed().as_secs_f64() * 1e3 / runs as f64);

    let mut state = plan.spawn()?;
    let t = Instant::now();
    for _ in 0..runs {
        state.run(tvec!(input.clone()))?;
    }
    println!("state.run (reused):     {:.3} ms/run", t.elapsed().as_secs_f64() * 1e3 / runs as f64);

    let mut times: HashMap<usize, Duration> = HashMap::new();
    for _ in 0..runs {
        state.run_plan_with_eval(tvec!(input.clone()), |ctx, st, node, inputs| {
            let t = Instant::now();
            let out = eval(ctx, st, node, inputs);
            *times.entry(node.id).or_default() += t.elapsed();
            out
        })?;
    }
    let model = plan.model();
    let mut rows: Vec<_> = times.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    let total: Duration = rows.iter().map(|r| r.1).sum();
    println!("per node (total {:.3} ms/run):", total.as_secs_f64() * 1e3 / runs as f64);
    for (id, d) in rows.iter().take(25) {
        let node = model.node(*id);
        println!(
            "{:8.3} ms  {:>5.1}%  {} {}",
            d.as_secs_f64() * 1e3 / runs as f64,
            d.as_secs_f64() / total.as_secs_f64() * 100.0,
            node.op().name(),
            node.name
        );
        if std::env::var_os("PROFILE_INFO").is_some() {
            for line in node.op().info().unwrap_or_default() {
                println!("             {line}");
            }
        }
    }
    Ok(())
}
