//! The `ocr-bench` report: run as a user runs it, it names the images it
//! measured (`--val-dir`, `--offset`, `--limit`) and the command line that
//! made it, counts exactly those images, and refuses contradictory flags.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const OCR_DIR: &str = env!("CARGO_MANIFEST_DIR");
const BENCH: &str = env!("CARGO_BIN_EXE_ocr-bench");

/// The style folders of the committed validation sets.
fn styles() -> usize {
    std::fs::read_dir(Path::new(OCR_DIR).join("validation"))
        .expect("validation dir")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().join("labels.tsv").is_file()))
        .count()
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BENCH).args(args).output().expect("ocr-bench runs")
}

#[test]
fn the_json_report_names_its_images_and_its_command() {
    // GIVEN two images per style from the fourth one on, no anchor, a short throughput pass
    let args = ["--json", "--no-anchor", "--offset", "3", "--limit", "2", "--throughput-secs", "0.2"];
    let out = run(&args);
    assert!(out.status.success(), "ocr-bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).expect("one JSON report on stdout");

    // THEN the report says which images it measured and how it was run
    assert_eq!(r["images"]["offset_per_style"], 3);
    assert_eq!(r["images"]["limit_per_style"], 2);
    assert_eq!(r["images"]["val_dir"], Path::new(OCR_DIR).join("validation").display().to_string());
    let command = r["command"].as_str().expect("command is a string");
    assert!(command.starts_with("cargo run --release -p captcha-ocr --bin ocr-bench -- "), "{command}");
    assert!(command.ends_with(&args.join(" ")), "{command}");
    // AND it measured exactly those images: two per style
    let n = styles();
    assert!(n >= 6, "the validation sets hold {n} styles");
    assert_eq!(r["ours"]["overall"]["n"], 2 * n as u64);
    let per_style = r["ours"]["styles"].as_object().expect("styles");
    assert_eq!(per_style.len(), n);
    assert!(per_style.values().all(|s| s["n"] == 2), "{per_style:?}");
    // AND names the cell reader it used, and why the anchor is missing
    assert!(r["versions"]["cells"].as_str().is_some_and(|v| v.starts_with("cells-")), "{}", r["versions"]);
    assert!(r["ddddocr"]["error"].as_str().is_some_and(|e| e.contains("--no-anchor")), "{}", r["ddddocr"]);
}

#[test]
fn without_a_limit_every_image_counts_and_the_given_folder_is_named() {
    // GIVEN a folder holding one style's labels and images (a copy of two images)
    let dir = std::env::temp_dir().join(format!("ocr-bench-report-{}", std::process::id()));
    let style = dir.join("pillow");
    std::fs::create_dir_all(&style).expect("temp dir");
    let src = Path::new(OCR_DIR).join("validation/pillow");
    let labels = std::fs::read_to_string(src.join("labels.tsv")).expect("labels");
    let mut kept = String::new();
    for line in labels.lines().take(2) {
        let file = line.split('\t').next().expect("file column");
        std::fs::copy(src.join(file), style.join(file)).expect("copy image");
        kept.push_str(line);
        kept.push('\n');
    }
    std::fs::write(style.join("labels.tsv"), kept).expect("labels");

    // WHEN the benchmark runs on it without --limit
    let val_dir = dir.display().to_string();
    let out = run(&["--json", "--no-anchor", "--throughput-secs", "0.2", "--val-dir", &val_dir]);
    std::fs::remove_dir_all(&dir).ok();
    assert!(out.status.success(), "ocr-bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).expect("one JSON report on stdout");

    // THEN every image counts, the limit is null and the folder is the one given
    assert_eq!(r["images"]["limit_per_style"], Value::Null);
    assert_eq!(r["images"]["offset_per_style"], 0);
    assert_eq!(r["images"]["val_dir"], val_dir.as_str());
    assert_eq!(r["ours"]["overall"]["n"], 2);
}

#[test]
fn contradictory_or_unknown_flags_fail_with_a_message() {
    for args in [&["--cells", "model-cells", "--no-cells"][..], &["--frobnicate"][..], &["--limit", "many"][..]] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(!out.stderr.is_empty(), "{args:?} should say why");
    }
}

#[test]
fn readings_file_has_one_row_per_image_that_agrees_with_the_report() {
    // GIVEN three images per style and a --readings file
    let path = std::env::temp_dir().join(format!("ocr-bench-readings-{}.tsv", std::process::id()));
    let path_arg = path.display().to_string();
    let out = run(&["--json", "--no-anchor", "--limit", "3", "--throughput-secs", "0.2", "--readings", &path_arg]);
    assert!(out.status.success(), "ocr-bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).expect("one JSON report on stdout");
    let text = std::fs::read_to_string(&path).expect("the readings file");
    std::fs::remove_file(&path).ok();

    // THEN it has a header and one row of eight columns per image, named by its file and label
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("style\tfile\tlabel\tanswer\texact\tby\treadings\tmodel_ms"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 3 * styles());
    for row in &rows {
        assert_eq!(row.len(), 8, "{row:?}");
        let labels = std::fs::read_to_string(Path::new(OCR_DIR).join("validation").join(row[0]).join("labels.tsv"))
            .expect("labels");
        assert!(labels.lines().any(|l| l == format!("{}\t{}", row[1], row[2])), "{row:?}");
        // AND an exact row's answer is its label (calc: the expression read)
        assert_eq!(row[4] == "1", row[3] == row[2], "{row:?}");
        assert!(["cells", "line", "none"].contains(&row[5]), "{row:?}");
        let n: usize = row[6].parse().expect("readings count");
        assert!(if row[5] == "line" { n >= 1 } else { n <= 1 }, "{row:?}");
        assert!(row[7].parse::<f64>().is_ok_and(|ms| ms >= 0.0), "{row:?}");
    }
    // AND the exact rows per style add up to the report's exact share (rounded to 4 places)
    for (style, score) in r["ours"]["styles"].as_object().expect("styles") {
        let exact = rows.iter().filter(|row| row[0] == style && row[4] == "1").count() as f64;
        let want = score["exact"].as_f64().expect("exact") * score["n"].as_f64().expect("n");
        assert!((exact - want).abs() < 0.01, "{style}: {exact} rows exact, the report says {want}");
    }
}
