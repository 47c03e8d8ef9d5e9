//! Accuracy, latency and throughput of the OCR engine, next to ddddocr.
//!
//! ```text
//! cargo run --release -p captcha-ocr --bin ocr-bench [-- --json] [--limit N] [--offset N]
//!     [--val-dir DIR] [--model DIR] [--cells DIR | --no-cells] [--no-anchor]
//!     [--throughput-secs S] [--cost-pass] [--readings FILE]
//! ```
//!
//! The embedded engine reads with its glyph-cell reader attached;
//! `--no-cells` measures the main model alone, `--cells DIR` another cell
//! model. `--model DIR` loads a main model without a cell reader.
//!
//! 1. accuracy per validation style, exact (case-sensitive) and
//!    case-insensitive, each style read with the flags a client would send
//!    (`calc=1` for calc — scored on the expression read, as ddddocr is, and
//!    on the result too — `phrase=1` for phrase);
//! 2. latency per image on one thread, batch 1, p50/p95: the model alone (the
//!    cell model's runs and the cuts they read, the main model's run, or both
//!    when the cells fall through) and the whole call (decode + preprocess +
//!    models + CTC); the share of each style the cell reader answered;
//! 3. images/s on all cores, one worker per core, whole calls;
//! 4. where a style has `ambiguity.tsv` (`training/ambiguity.py`): the bound
//!    any reader can reach on it (look-alikes that render the same) and our
//!    exact score with those look-alikes forgiven;
//! 5. the anchor: `training/bench_ddddocr.py` on the same images, run after
//!    ours so the two never share the CPU. Python is `$CAPTCHA_BENCH_PYTHON`,
//!    else the venv `training/setup.sh` makes (`$CAPTCHA_TRAIN_VENV`, default
//!    `~/.cache/captcha-train-venv`) if present, else `python3`.
//!
//! Prints a markdown report (or one JSON object with `--json`).
//!
//! `--readings FILE` also writes one tab-separated row per image (under a
//! header): style, file, label, the answer (empty when none), whether it was
//! exact (as 1. scores it), who answered (`cells`, `line`, or `none`), how
//! many readings the answer was chosen from (the main model's test-time
//! shifts make it more than 1), and the model's milliseconds. It is how two
//! models are compared image by image.
//!
//! `--cost-pass` measures nothing itself: it runs every image's model step
//! (what 2. times as "model alone") once through [`model_step`], for
//! `valgrind --tool=callgrind` to count (`training/callgrind_cost.py` runs it
//! and reads one dump per call), and prints one `index<TAB>style<TAB>cells`
//! line per image.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use captcha_ocr::{CellReader, Constraints, LogProbs, Ocr, OcrError};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

const OCR_DIR: &str = env!("CARGO_MANIFEST_DIR");

struct Args {
    json: bool,
    limit: usize,
    /// `--offset N`: skip the first N images of each style (then `--limit`).
    offset: usize,
    val_dir: PathBuf,
    model: Option<PathBuf>,
    /// A cell model to attach instead of the embedded one (`model-cells/`).
    cells: Option<PathBuf>,
    /// `--no-cells`: the main model alone.
    no_cells: bool,
    anchor: bool,
    throughput_secs: f64,
    cost_pass: bool,
    /// `--readings FILE`: one row per image (see the crate doc).
    readings: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        json: false,
        limit: 0,
        offset: 0,
        val_dir: Path::new(OCR_DIR).join("validation"),
        model: None,
        cells: None,
        no_cells: false,
        anchor: true,
        throughput_secs: 10.0,
        cost_pass: false,
        readings: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--json" => args.json = true,
            "--no-anchor" => args.anchor = false,
            "--cost-pass" => args.cost_pass = true,
            "--limit" => args.limit = value()?.parse().context("--limit")?,
            "--offset" => args.offset = value()?.parse().context("--offset")?,
            "--val-dir" => args.val_dir = value()?.into(),
            "--model" => args.model = Some(value()?.into()),
            "--cells" => args.cells = Some(value()?.into()),
            "--no-cells" => args.no_cells = true,
            "--throughput-secs" => args.throughput_secs = value()?.parse().context("--throughput-secs")?,
            "--readings" => args.readings = Some(value()?.into()),
            "-h" | "--help" => {
                println!(
                    "ocr-bench [--json] [--limit N] [--offset N] [--val-dir DIR] [--model DIR] [--cells DIR | --no-cells] [--no-anchor] [--throughput-secs S] [--cost-pass] [--readings FILE]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(args)
}

/// One validation image.
struct Sample {
    style: String,
    /// The image's file name in its style folder.
    name: String,
    bytes: Vec<u8>,
    label: String,
    /// From `ambiguity.tsv`: the characters each position may be read as
    /// (look-alikes that render the same), and this image's bound.
    same: Option<(Vec<Vec<char>>, f64)>,
}

/// `Ak[Vv]u` -> `[[A], [k], [V, v], [u]]`.
fn parse_pattern(p: &str) -> Result<Vec<Vec<char>>> {
    let mut out = Vec::new();
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '[' {
            let mut group = Vec::new();
            loop {
                match chars.next() {
                    Some(']') if !group.is_empty() => break,
                    Some(']') => bail!("empty [] in {p:?}"),
                    Some(c) => group.push(c),
                    None => bail!("unclosed [ in {p:?}"),
                }
            }
            out.push(group);
        } else {
            out.push(vec![c]);
        }
    }
    Ok(out)
}

/// Whether `text` is one of the strings `pattern` stands for.
fn matches(pattern: &[Vec<char>], text: &str) -> bool {
    text.chars().count() == pattern.len() && text.chars().zip(pattern).all(|(c, options)| options.contains(&c))
}

/// Per image file: the characters each position may be read as, and the
/// image's bound.
type Ambiguity = std::collections::HashMap<String, (Vec<Vec<char>>, f64)>;

/// `<style>/ambiguity.tsv` (`file<TAB>pattern<TAB>bound`), if present.
fn load_ambiguity(dir: &Path) -> Result<Ambiguity> {
    let path = dir.join("ambiguity.tsv");
    let mut map = std::collections::HashMap::new();
    if !path.is_file() {
        return Ok(map);
    }
    for line in std::fs::read_to_string(&path)?.lines().filter(|l| !l.is_empty()) {
        let mut cols = line.split('\t');
        let (Some(name), Some(pattern), Some(bound)) = (cols.next(), cols.next(), cols.next()) else {
            bail!("{}: want three columns in {line:?}", path.display());
        };
        let bound: f64 = bound.parse().with_context(|| format!("{}: bound in {line:?}", path.display()))?;
        map.insert(name.to_string(), (parse_pattern(pattern)?, bound));
    }
    Ok(map)
}

fn load_samples(dir: &Path, offset: usize, limit: usize) -> Result<Vec<Sample>> {
    let mut styles: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("labels.tsv").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    styles.sort();
    let mut samples = Vec::new();
    for style in styles {
        let labels = std::fs::read_to_string(dir.join(&style).join("labels.tsv"))?;
        let mut same = load_ambiguity(&dir.join(&style))?;
        let rows = labels.lines().filter(|l| !l.is_empty());
        for line in rows.skip(offset).take(if limit == 0 { usize::MAX } else { limit }) {
            let (name, label) =
                line.split_once('\t').with_context(|| format!("{style}/labels.tsv: no tab in {line:?}"))?;
            let bytes = std::fs::read(dir.join(&style).join(name)).with_context(|| format!("{style}/{name}"))?;
            let same = same.remove(name);
            if let Some((pattern, _)) = &same {
                if !matches(pattern, label) {
                    bail!("{style}/ambiguity.tsv: the pattern for {name} does not match its label {label:?}");
                }
            }
            samples.push(Sample {
                style: style.clone(),
                name: name.to_string(),
                bytes,
                label: label.to_string(),
                same,
            });
        }
    }
    if samples.is_empty() {
        bail!("no validation images under {}", dir.display());
    }
    Ok(samples)
}

/// The flags a client would send for a style.
fn constraints_for(style: &str, case_sensitive: bool) -> Constraints {
    Constraints { case_sensitive, calc: style == "calc", phrase: style == "phrase", ..Constraints::default() }
}

/// The integer result of `12+7=?`-like labels.
fn calc_result(label: &str) -> Option<i64> {
    let body = label.trim_end_matches(['=', '?']);
    let at = body.find(['+', '-', '*'])?;
    let (a, b): (i64, i64) = (body[..at].parse().ok()?, body[at + 1..].parse().ok()?);
    match &body[at..at + 1] {
        "+" => Some(a + b),
        "-" => Some(a - b),
        _ => Some(a * b),
    }
}

#[derive(Default, Clone)]
struct StyleScore {
    n: usize,
    exact: usize,
    exact_ci: usize,
    /// calc only: the answer (the result) right.
    answer: usize,
    /// Images with an `ambiguity.tsv` row, the sum of their bounds, and how
    /// many we read as one of the strings that render the same.
    with_bound: usize,
    bound: f64,
    forgiven: usize,
    /// Images the cell reader answered.
    by_cells: usize,
    /// Model time per image of this style.
    model_ns: Option<Histogram<u64>>,
}

struct Measured {
    styles: Vec<(String, StyleScore)>,
    model_ns: Histogram<u64>,
    /// CPU time of the model run on this thread: what the model costs with
    /// the waits for a shared CPU taken out.
    model_cpu_ns: Histogram<u64>,
    total_ns: Histogram<u64>,
    /// One `--readings` row per image, in the order read.
    rows: Vec<String>,
}

/// This thread's CPU time so far (`CLOCK_THREAD_CPUTIME_ID`, nanosecond
/// resolution).
fn thread_cpu_ns() -> Option<u64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// The 1-minute load average, to judge how shared the CPU was.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// One pass over every image on this thread: accuracy and latency together.
fn measure_serial(ocr: &Ocr, samples: &[Sample]) -> Result<Measured> {
    let mut model_ns = Histogram::<u64>::new(3)?;
    let mut total_ns = Histogram::<u64>::new(3)?;
    let mut model_cpu_ns = Histogram::<u64>::new(3)?;
    // Warm-up: caches, allocator, page faults.
    for s in samples.iter().take(30) {
        let _ = ocr.recognize(&s.bytes, &constraints_for(&s.style, true));
    }
    let mut styles: Vec<(String, StyleScore)> = Vec::new();
    let mut rows = vec!["style\tfile\tlabel\tanswer\texact\tby\treadings\tmodel_ms".to_string()];
    for s in samples {
        if styles.last().is_none_or(|(name, _)| *name != s.style) {
            styles.push((s.style.clone(), StyleScore::default()));
        }
        let cs = constraints_for(&s.style, true);
        let t0 = Instant::now();
        let mut model = Duration::ZERO;
        let mut model_cpu = Some(0u64);
        // `Ocr::recognize`, in its steps, with the models' runs timed.
        let mut timed = |run: &mut dyn FnMut() -> Result<Option<Vec<LogProbs>>, OcrError>| {
            let cpu0 = thread_cpu_ns();
            let t1 = Instant::now();
            let out = run();
            model += t1.elapsed();
            model_cpu = model_cpu.zip(cpu0.zip(thread_cpu_ns())).map(|(m, (a, b))| m + b.saturating_sub(a));
            out
        };
        let read = ocr.decode_image(&s.bytes).and_then(|rgb| {
            if let Some(lp) = timed(&mut || Ok(ocr.infer_cells(&rgb, &cs)?.map(|lp| vec![lp])))? {
                match lp.first().and_then(|lp| ocr.decode_cells(lp, &cs)) {
                    Some(Ok(answer)) => return Ok(Some((answer, lp, true))),
                    Some(Err(_)) => return Ok(None),
                    None => {}
                }
            }
            let x = ocr.line_input(&rgb);
            let Some(readings) = timed(&mut || ocr.line_readings(&x).map(Some))? else { return Ok(None) };
            Ok(ocr.decode_readings(&readings, &cs).ok().map(|a| (a, readings, false)))
        });
        let (answer, model) = match read {
            Ok(answer) => (answer, Some(model)),
            Err(_) => (None, None),
        };
        let total = t0.elapsed();
        if let Some(model) = model {
            model_ns.record(model.as_nanos() as u64)?;
            let style = &mut styles.last_mut().context("a style")?.1;
            let per_style = match &mut style.model_ns {
                Some(h) => h,
                None => style.model_ns.insert(Histogram::new(3)?),
            };
            per_style.record(model.as_nanos() as u64)?;
        }
        if let Some(cpu) = model_cpu {
            model_cpu_ns.record(cpu.max(1))?;
        }
        total_ns.record(total.as_nanos() as u64)?;

        let score = &mut styles.last_mut().context("a style")?.1;
        score.n += 1;
        if let Some((_, bound)) = &s.same {
            score.with_bound += 1;
            score.bound += bound;
        }
        // Labels and answers hold no tab or newline; a file name could, so
        // it is written escaped.
        let row = |answer: &str, exact: bool, by: &str, n: usize| {
            format!(
                "{}\t{}\t{}\t{answer}\t{}\t{by}\t{n}\t{:.3}",
                s.style,
                s.name.escape_default(),
                s.label,
                u8::from(exact),
                model.map_or(0.0, |m| m.as_secs_f64() * 1000.0)
            )
        };
        let Some((answer, readings, by_cells)) = answer else {
            rows.push(row("", false, "none", 0));
            continue;
        };
        score.by_cells += usize::from(by_cells);
        if let Some((pattern, _)) = &s.same {
            score.forgiven += usize::from(matches(pattern, &answer.text));
        }
        // Case-insensitive: the same output decoded as for `regsense=0`, by
        // the decode that answered (the cells' or the main model's).
        let ci = constraints_for(&s.style, false);
        let read_ci = if by_cells {
            readings.first().and_then(|lp| ocr.decode_cells(lp, &ci)).and_then(Result::ok)
        } else {
            ocr.decode_readings(&readings, &ci).ok()
        }
        .map(|a| a.raw.to_lowercase())
        .unwrap_or_default();
        // calc is scored on the expression read, as ddddocr is; its result
        // is counted on the side.
        let read = if s.style == "calc" { &answer.raw } else { &answer.text };
        let exact = *read == s.label;
        score.exact += usize::from(exact);
        score.exact_ci += usize::from(read_ci == s.label.to_lowercase());
        if s.style == "calc" {
            let want = calc_result(&s.label).map(|v| v.to_string());
            score.answer += usize::from(want.as_deref() == Some(answer.text.as_str()));
        }
        rows.push(row(read, exact, if by_cells { "cells" } else { "line" }, readings.len()));
    }
    Ok(Measured { styles, model_ns, model_cpu_ns, total_ns, rows })
}

/// One image's model step, as `measure_serial` times it: the cell reader's
/// attempt, then the main model when the cells gave no usable reading
/// (`main`, found beforehand). Never inlined, so that callgrind can count
/// each call on its own (`--toggle-collect` / `--dump-after`).
#[inline(never)]
fn model_step(ocr: &Ocr, rgb: &image::RgbImage, x: &[f32], cs: &Constraints, main: bool) -> Result<(), OcrError> {
    std::hint::black_box(ocr.infer_cells(rgb, cs)?);
    if main {
        std::hint::black_box(ocr.line_readings(x)?);
    }
    Ok(())
}

/// `--cost-pass`: every image's model step once, in order, for callgrind.
fn cost_pass(ocr: &Ocr, samples: &[Sample]) -> Result<()> {
    let mut out = String::new();
    for (i, s) in samples.iter().enumerate() {
        let cs = constraints_for(&s.style, true);
        let rgb = ocr.decode_image(&s.bytes).with_context(|| format!("image {i} ({})", s.style))?;
        let x = ocr.line_input(&rgb);
        // Uncounted: does the cell reading stand, or does the main model run too?
        let by_cells = match ocr.infer_cells(&rgb, &cs)? {
            Some(lp) => ocr.decode_cells(&lp, &cs).is_some(),
            None => false,
        };
        model_step(ocr, &rgb, &x, &cs, !by_cells)?;
        out.push_str(&format!("{i}\t{}\t{}\n", s.style, u8::from(by_cells)));
    }
    print!("{out}");
    Ok(())
}

/// Whole calls on `workers` threads sharing one `Ocr`, for about `secs`.
fn measure_throughput(ocr: &Ocr, samples: &[Sample], workers: usize, secs: f64) -> f64 {
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for w in 0..workers {
            let (done, stop) = (&done, &stop);
            scope.spawn(move || {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let s = &samples[i % samples.len()];
                    let _ = ocr.recognize(&s.bytes, &constraints_for(&s.style, true));
                    done.fetch_add(1, Ordering::Relaxed);
                    i += workers;
                }
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn python() -> String {
    if let Ok(p) = std::env::var("CAPTCHA_BENCH_PYTHON") {
        return p;
    }
    // The same venv as training/setup.sh: $CAPTCHA_TRAIN_VENV, else ~/.cache/captcha-train-venv.
    let venv = std::env::var_os("CAPTCHA_TRAIN_VENV")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/captcha-train-venv")));
    match venv.map(|v| v.join("bin/python")) {
        Some(py) if py.exists() => py.display().to_string(),
        _ => "python3".into(),
    }
}

/// Runs the ddddocr anchor; its one JSON object, or why there is none.
fn run_anchor(val_dir: &Path, limit: usize) -> Result<Value, String> {
    let script = Path::new(OCR_DIR).join("training").join("bench_ddddocr.py");
    if !script.is_file() {
        return Err(format!("{} is missing", script.display()));
    }
    let py = python();
    let mut cmd = Command::new(&py);
    cmd.arg(&script).arg("--val-dir").arg(val_dir);
    if limit > 0 {
        cmd.arg("--limit").arg(limit.to_string());
    }
    let out = cmd.output().map_err(|e| format!("running {py}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        return Err(format!("{py} {} failed ({}): {}", script.display(), out.status, tail.join(" | ")));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok().filter(Value::is_object))
        .ok_or_else(|| "the script printed no JSON object".to_string())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// A package's version from the workspace's Cargo.lock.
fn locked_version(name: &str) -> String {
    let lock = Path::new(OCR_DIR).join("../../Cargo.lock");
    let text = std::fs::read_to_string(lock).unwrap_or_default();
    let needle = format!("name = \"{name}\"\nversion = \"");
    text.find(&needle)
        .and_then(|at| {
            let rest = &text[at + needle.len()..];
            rest.find('"').map(|end| rest[..end].to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn rustc_version() -> String {
    Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "rustc ?".into())
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    (h.value_at_quantile(q) as f64 / 1e6 * 1000.0).round() / 1000.0
}

/// `k / n` rounded to 4 decimals.
fn ratio(k: usize, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        (k as f64 / n as f64 * 10_000.0).round() / 10_000.0
    }
}

/// An f32 setting as the decimal it was written as (0.7, not 0.699999988).
fn rounded(v: f32) -> f64 {
    (f64::from(v) * 1e6).round() / 1e6
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if args.offset > 0 && args.anchor && !args.cost_pass {
        bail!("--offset needs --no-anchor: the ddddocr anchor reads the first images of each style");
    }
    let t0 = Instant::now();
    let ocr = match &args.model {
        Some(dir) => Ocr::from_files(dir.join("captcha.onnx"), dir.join("model.json"))?,
        None => Ocr::embedded()?,
    };
    let ocr = match (&args.cells, args.no_cells) {
        (Some(_), true) => bail!("--cells and --no-cells exclude each other"),
        (Some(dir), false) => {
            ocr.with_cells(Some(CellReader::from_files(dir.join("cells.onnx"), dir.join("model.json"))?))?
        }
        (None, true) => ocr.with_cells(None)?,
        (None, false) => ocr,
    };
    let load_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let samples = load_samples(&args.val_dir, args.offset, args.limit)?;
    if args.cost_pass {
        return cost_pass(&ocr, &samples);
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!(
        "ocr-bench: model {} ({}x{}, max width {}, crop {}, resize {}, max squeeze {}, alphabet prior {}, T={}), cells {} (alphabet prior {}), loaded in {load_ms:.0} ms; {} images",
        ocr.spec().version,
        ocr.spec().input_height,
        ocr.spec().input_width,
        json!(ocr.spec().max_width),
        json!(ocr.spec().crop),
        json!(ocr.spec().resize),
        json!(ocr.spec().max_squeeze),
        ocr.spec().alphabet_prior.len(),
        ocr.steps(),
        ocr.cells().map_or("none".to_string(), |c| c.spec().version.clone()),
        ocr.cells().map_or(0, |c| c.spec().alphabet_prior.len()),
        samples.len()
    );

    let load_before = load_average();
    let measured = measure_serial(&ocr, &samples)?;
    if let Some(path) = &args.readings {
        std::fs::write(path, measured.rows.join("\n") + "\n")
            .with_context(|| format!("--readings {}", path.display()))?;
    }
    eprintln!("ocr-bench: accuracy and latency done; throughput on {workers} workers...");
    let images_per_s = measure_throughput(&ocr, &samples, workers, args.throughput_secs);
    let anchor = if args.anchor {
        eprintln!("ocr-bench: running the ddddocr anchor on the same images...");
        run_anchor(&args.val_dir, args.limit)
    } else {
        Err("skipped (--no-anchor)".into())
    };

    let ours_styles: serde_json::Map<String, Value> = measured
        .styles
        .iter()
        .map(|(name, s)| {
            let mut v = json!({
                "n": s.n,
                "exact": ratio(s.exact, s.n),
                "exact_ci": ratio(s.exact_ci, s.n),
                "by_cells": ratio(s.by_cells, s.n),
                "model_p50": s.model_ns.as_ref().map(|h| ms(h, 0.5)),
            });
            if name == "calc" {
                v["answer"] = json!(ratio(s.answer, s.n));
            }
            if s.with_bound == s.n && s.n > 0 {
                v["bound"] = json!((s.bound / s.n as f64 * 1000.0).round() / 1000.0);
                v["exact_forgiven"] = json!(ratio(s.forgiven, s.n));
            }
            (name.clone(), v)
        })
        .collect();
    let (n, exact, exact_ci) =
        measured.styles.iter().fold((0, 0, 0), |(n, e, c), (_, s)| (n + s.n, e + s.exact, c + s.exact_ci));
    let report = json!({
        "machine": {"cpu": cpu_model(), "cores": workers, "load_average_1m_at_start": load_before},
        "versions": {
            "rustc": rustc_version(),
            "tract-onnx": locked_version("tract-onnx"),
            "image": locked_version("image"),
            "model": ocr.spec().version,
            "model_crop": ocr.spec().crop,
            "model_resize": ocr.spec().resize,
            "model_max_squeeze": ocr.spec().max_squeeze,
            "model_max_width": ocr.spec().max_width.map(|m| json!({"max_width": m, "width_step": ocr.spec().width_step})),
            "model_alphabet_prior": ocr.spec().alphabet_prior.len(),
            "cells": ocr.cells().map(|c| c.spec().version.clone()),
            "cells_alphabet_prior": ocr.cells().map(|c| c.spec().alphabet_prior.len()),
            "model_tta": {"shifts": ocr.spec().tta_shifts, "below": rounded(ocr.spec().tta_below),
                "below_wide": ocr.spec().tta_below_wide.map(rounded)},
            "cells_tta": ocr.cells().map(|c| json!({"shifts": c.spec().tta_shifts, "below": rounded(c.spec().tta_below)})),
        },
        "command": command_line(),
        "images": {
            "val_dir": args.val_dir.display().to_string(),
            "offset_per_style": args.offset,
            "limit_per_style": (args.limit > 0).then_some(args.limit),
        },
        "ours": {
            "model_load_ms": (load_ms * 10.0).round() / 10.0,
            "styles": ours_styles,
            "overall": {"n": n, "exact": ratio(exact, n), "exact_ci": ratio(exact_ci, n)},
            "latency_ms": {
                "model": {"p50": ms(&measured.model_ns, 0.5), "p95": ms(&measured.model_ns, 0.95)},
                "model_cpu": {"p50": ms(&measured.model_cpu_ns, 0.5), "p95": ms(&measured.model_cpu_ns, 0.95)},
                "total": {"p50": ms(&measured.total_ns, 0.5), "p95": ms(&measured.total_ns, 0.95)},
            },
            "throughput": {"workers": workers, "images_per_s": images_per_s.round()},
        },
        "ddddocr": match &anchor {
            Ok(v) => v.clone(),
            Err(why) => json!({"error": why}),
        },
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_markdown(&report);
    }
    Ok(())
}

/// The command that made this report, with its arguments, so a report read
/// later says which images it measured (`--offset`, `--limit`, `--cells`).
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let base = "cargo run --release -p captcha-ocr --bin ocr-bench";
    if args.is_empty() {
        base.into()
    } else {
        format!("{base} -- {}", args.join(" "))
    }
}

fn print_markdown(r: &Value) {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => other.to_string(),
    };
    let p = |v: &Value| v.as_f64().map_or("—".to_string(), |x| format!("{:.1}%", x * 100.0));
    let ours = &r["ours"];
    let dd = &r["ddddocr"];
    println!(
        "Machine: {}, {} cores. Versions: {}, tract-onnx {}, image {}; model `{}` (alphabet prior: {} alphabets; test-time shifts {}), cells `{}` (alphabet prior: {} alphabets; test-time shifts {}); ddddocr {} (onnxruntime {}).",
        s(&r["machine"]["cpu"]),
        s(&r["machine"]["cores"]),
        s(&r["versions"]["rustc"]),
        s(&r["versions"]["tract-onnx"]),
        s(&r["versions"]["image"]),
        s(&r["versions"]["model"]),
        s(&r["versions"]["model_alphabet_prior"]),
        s(&r["versions"]["model_tta"]),
        s(&r["versions"]["cells"]),
        s(&r["versions"]["cells_alphabet_prior"]),
        s(&r["versions"]["cells_tta"]),
        s(&dd["version"]),
        s(&dd["onnxruntime"]),
    );
    println!("Command: `{}`", s(&r["command"]));
    let images = &r["images"];
    println!(
        "Images: `{}`, per style from image {} on, {}.",
        s(&images["val_dir"]),
        s(&images["offset_per_style"]),
        match images["limit_per_style"].as_u64() {
            Some(n) => format!("at most {n}"),
            None => "all".into(),
        }
    );
    println!(
        "Load average (1 min) when the run started: {} — other processes share these cores.",
        s(&r["machine"]["load_average_1m_at_start"])
    );
    if let Some(err) = dd.get("error") {
        println!("\nddddocr anchor: not run — {}", s(err));
    }
    println!();
    println!(
        "| style | images | ours exact | ours case-insensitive | ddddocr exact | ddddocr case-insensitive | bound, any reader | ours, look-alikes forgiven | read as cells | ours, model p50 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut names: Vec<&String> = ours["styles"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
    names.sort();
    for name in names {
        let o = &ours["styles"][name];
        let d = &dd["styles"][name];
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} ms |",
            s(&o["n"]),
            p(&o["exact"]),
            p(&o["exact_ci"]),
            p(&d["exact"]),
            p(&d["exact_ci"]),
            p(&o["bound"]),
            p(&o["exact_forgiven"]),
            p(&o["by_cells"]),
            s(&o["model_p50"])
        );
    }
    println!(
        "| **all** | {} | **{}** | **{}** | **{}** | **{}** | | | | |",
        s(&ours["overall"]["n"]),
        p(&ours["overall"]["exact"]),
        p(&ours["overall"]["exact_ci"]),
        p(&dd["overall"]["exact"]),
        p(&dd["overall"]["exact_ci"])
    );
    println!(
        "\nbound, any reader: exact accuracy no reader can beat, because some look-alikes (c/C, 0/O, ...) render the same \
         (`ambiguity.tsv`, from `training/ambiguity.py`); look-alikes forgiven: ours, counting a read as right when it renders the same as the label; \
         read as cells: answered by the cell reader (`--cells`) instead of the main model."
    );
    if let Some(answer) = ours["styles"]["calc"].get("answer") {
        println!(
            "\ncalc is scored on the expression read; with `calc=1` our answer (the result) is right for {}.",
            p(answer)
        );
    }
    println!();
    println!("| latency per image, 1 thread, batch 1 | p50 | p95 |");
    println!("|---|---:|---:|");
    let lat = &ours["latency_ms"];
    println!("| ours, model only | {} ms | {} ms |", s(&lat["model"]["p50"]), s(&lat["model"]["p95"]));
    println!(
        "| ours, model only, thread CPU time | {} ms | {} ms |",
        s(&lat["model_cpu"]["p50"]),
        s(&lat["model_cpu"]["p95"])
    );
    println!(
        "| ours, whole call (decode + preprocess + model + CTC) | {} ms | {} ms |",
        s(&lat["total"]["p50"]),
        s(&lat["total"]["p95"])
    );
    println!(
        "| ddddocr `classification(bytes)` | {} ms | {} ms |",
        s(&dd["latency_ms"]["p50"]),
        s(&dd["latency_ms"]["p95"])
    );
    println!(
        "\nThroughput, ours: {} images/s on {} workers (one per core, one shared model, whole calls). Model load: {} ms.",
        s(&ours["throughput"]["images_per_s"]),
        s(&ours["throughput"]["workers"]),
        s(&ours["model_load_ms"])
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_stand_for_their_look_alikes_only() {
        let p = parse_pattern("Ak[Vv]u").unwrap();
        assert_eq!(p, vec![vec!['A'], vec!['k'], vec!['V', 'v'], vec!['u']]);
        assert!(matches(&p, "AkVu"));
        assert!(matches(&p, "Akvu"));
        assert!(!matches(&p, "AkWu"));
        assert!(!matches(&p, "akvu"));
        assert!(!matches(&p, "Akvuu"));
        assert!(parse_pattern("a[]b").is_err());
        assert!(parse_pattern("a[bc").is_err());
    }

    #[test]
    fn the_committed_ambiguity_files_match_their_labels() {
        let dir = Path::new(OCR_DIR).join("validation");
        let samples = load_samples(&dir, 0, 0).unwrap();
        let with = samples.iter().filter(|s| s.same.is_some()).count();
        assert!(with >= 1500, "{with} images with an ambiguity row");
        assert!(samples.iter().filter(|s| s.style == "calc").all(|s| s.same.is_none()));
    }

    #[test]
    fn offset_skips_the_first_images_of_each_style() {
        let dir = Path::new(OCR_DIR).join("validation");
        let all = load_samples(&dir, 0, 3).unwrap();
        let later = load_samples(&dir, 1, 2).unwrap();
        assert_eq!(later.len(), 2 * all.len() / 3);
        let tail: Vec<&str> = all.chunks(3).flat_map(|c| &c[1..]).map(|s| s.label.as_str()).collect();
        assert_eq!(later.iter().map(|s| s.label.as_str()).collect::<Vec<_>>(), tail);
    }
}
