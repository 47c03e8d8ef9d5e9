//! The real binary end to end: first start prints a key, an image is solved
//! by the model and charged once, reports refund once, and the account CLI
//! works while the server runs; neither dies when its stdout reader has gone.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[tokio::test]
async fn first_start_prints_a_key_and_solves_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let (mut key, mut base) = (String::new(), String::new());
    while base.is_empty() {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut out, &mut line).expect("read") > 0, "exited early");
        if let Some(k) = line.trim().strip_prefix("API key: ") {
            key = k.to_string();
        }
        if let Some(b) = line.trim().strip_prefix("Listening on ") {
            base = b.to_string();
        }
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    assert_eq!(key.len(), 32);

    let http = client();
    assert_eq!(balance(&http, &base, &key).await, "10");
    let mut right = 0;
    let samples = samples("captcha-default", 10);
    for (img, label) in &samples {
        let text = submit(&http, &base, &key, img, &[]).await.expect("submit");
        let id = text.strip_prefix("OK|").unwrap_or_else(|| panic!("{text}")).to_string();
        assert!(id.bytes().all(|b| b.is_ascii_digit()));
        let answer = wait_final(&http, &base, &key, &id, Duration::from_secs(30)).await;
        if answer == format!("OK|{}", label.to_lowercase()) {
            right += 1;
        }
        // get2 shows the price.
        let get2 = res(&http, &base, &[("key", &key), ("action", "get2"), ("id", &id)]).await.expect("get2");
        assert!(get2.ends_with("|0.001"), "{get2}");
    }
    assert!(right >= 8, "{right}/10 read right");
    let spent = 10_000_000 - 10 * 1_000;
    assert_eq!(captcha_core::parse_money(&balance(&http, &base, &key).await), Some(spent));

    // reportbad refunds once; a second report is a duplicate.
    let text = submit(&http, &base, &key, &samples[0].0, &[]).await.expect("submit");
    let id = text.trim_start_matches("OK|").to_string();
    wait_final(&http, &base, &key, &id, Duration::from_secs(30)).await;
    let r = res(&http, &base, &[("key", &key), ("action", "reportbad"), ("id", &id)]).await.expect("report");
    assert_eq!(r, "OK_REPORT_RECORDED");
    let r = res(&http, &base, &[("key", &key), ("action", "reportbad"), ("id", &id)]).await.expect("report");
    assert_eq!(r, "ERROR_DUPLICATE_REPORT");
    assert_eq!(captcha_core::parse_money(&balance(&http, &base, &key).await), Some(spent));

    // The account CLI works on the same data dir while the server runs.
    let other = create_account(dir.path(), "0");
    let body = submit(&http, &base, &other, &samples[0].0, &[("json", "1")]).await.expect("submit");
    assert!(body.contains("ERROR_ZERO_BALANCE"), "{body}");
    let out = Command::new(BIN)
        .args(["account", "topup", &other, "0.5", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("topup");
    assert!(out.status.success());
    assert_eq!(balance(&http, &base, &other).await, "0.5");
    let list = Command::new(BIN).args(["account", "list", "--data-dir"]).arg(dir.path()).output().expect("list");
    assert_eq!(String::from_utf8_lossy(&list.stdout).lines().count(), 3, "header + 2 accounts");

    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn in_flight_cap_and_rate_cap_answer_their_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = create_account(dir.path(), "10");
    // Workers that never catch up: with 0 slots free after 2, the third is refused.
    let server = Server::start(dir.path(), &["--max-in-flight", "2", "--ocr-workers", "1"]);
    let http = client();
    let imgs = samples("captcha-default", 1);
    let img = &imgs[0].0;
    let mut codes = Vec::new();
    let futs: Vec<_> =
        (0..20).map(|_| submit_owned(http.clone(), server.base.clone(), key.clone(), img.clone())).collect();
    for f in futures_join(futs).await {
        codes.push(f.expect("submit"));
    }
    assert!(codes.iter().any(|c| c == "ERROR_NO_SLOT_AVAILABLE"), "{codes:?}");
    drop(server);

    let server = Server::start(dir.path(), &["--max-rps", "2"]);
    let mut codes = Vec::new();
    for _ in 0..10 {
        codes.push(submit(&http, &server.base, &key, img, &[]).await.expect("submit"));
    }
    assert!(codes.iter().any(|c| c == "MAX_USER_TURN"), "{codes:?}");
}

async fn futures_join<F>(futs: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("join"));
    }
    out
}

async fn submit_owned(http: reqwest::Client, base: String, key: String, img: Vec<u8>) -> reqwest::Result<String> {
    submit(&http, &base, &key, &img, &[]).await
}

/// `captchad account create | head -n 1`: the reader closes the pipe after the
/// key line (here: before anything is written). The account exists and the
/// command succeeds instead of panicking on the broken pipe.
#[test]
fn account_create_into_a_closed_pipe_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out =
        with_closed_stdout(&["account", "create", "--balance", "2.5"], dir.path()).wait_with_output().expect("wait");
    assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    let list = Command::new(BIN).args(["account", "list", "--data-dir"]).arg(dir.path()).output().expect("list");
    assert!(list.status.success());
    let listed = String::from_utf8_lossy(&list.stdout);
    assert_eq!(listed.lines().count(), 2, "header and the one account: {listed}");
    assert!(listed.contains(" 2.5 "), "{listed}");
}

/// `captchad serve` whose stdout reader is gone (started as `captchad serve | head -n 1`,
/// or its log pipe closed) keeps serving: the first-start key and the listening
/// line are not worth dying for.
#[tokio::test]
async fn serve_with_a_closed_stdout_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let mut child = with_closed_stdout(&["serve", "--listen", &format!("127.0.0.1:{port}")], dir.path());
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let answer = loop {
        assert!(child.try_wait().expect("try_wait").is_none(), "captchad exited");
        if let Ok(r) = http.get(format!("http://127.0.0.1:{port}/res.php?key=nope&action=getbalance")).send().await {
            break r.text().await.expect("body");
        }
        assert!(std::time::Instant::now() < deadline, "not listening within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answer, "ERROR_WRONG_USER_KEY", "a malformed key gets its documented code");
    assert!(child.try_wait().expect("try_wait").is_none(), "captchad exited after answering");
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts `captchad <args> --data-dir <dir>` and closes the read end of its
/// stdout at once (before it can have written anything).
fn with_closed_stdout(args: &[&str], dir: &std::path::Path) -> std::process::Child {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    drop(child.stdout.take());
    child
}

/// `--ocr-cells` attaches a glyph-cell reader to the main model: with
/// `--ocr-model` (a main model from files, which comes without one) the
/// server answers multicolor strips as that model with the cells does, not as
/// it does alone; and a wrong `--ocr-cells` or `--ocr-model` directory stops
/// the start with a clear error.
#[tokio::test]
async fn ocr_cells_option_reads_multicolor_with_the_cell_reader() {
    use captcha_core::{ImageOptions, ImageSolver};
    use captcha_ocr::port::OcrSolver;

    let ocr_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/ocr");
    let (model_dir, cells_dir) = (ocr_dir.join("model-bilstm"), ocr_dir.join("model-cells"));
    let with_cells = OcrSolver::load_with(Some(&model_dir), Some(&cells_dir)).expect("cells load");
    let plain = OcrSolver::load_with(Some(&model_dir), None).expect("model loads");
    assert!(plain.ocr().cells().is_none() && with_cells.ocr().cells().is_some());
    let opts = ImageOptions { case_sensitive: true, ..ImageOptions::default() };
    let samples = samples("multicolor", 12);
    // What the server should answer: the engine's reading, or unsolvable.
    let answer = |solver: &OcrSolver, img: &[u8]| match solver.solve(img, &opts) {
        Ok(text) => format!("OK|{text}"),
        Err(_) => "ERROR_CAPTCHA_UNSOLVABLE".to_string(),
    };
    let expect: Vec<String> = samples.iter().map(|(img, _)| answer(&with_cells, img)).collect();
    let differ = samples.iter().zip(&expect).filter(|((img, _), want)| answer(&plain, img) != **want).count();
    assert!(differ >= 6, "the cell reader changes only {differ} of 12 answers");

    let dir = tempfile::tempdir().expect("tempdir");
    let key = create_account(dir.path(), "1");
    let (model_arg, cells_arg) = (model_dir.to_string_lossy().to_string(), cells_dir.to_string_lossy().to_string());
    let server = Server::start(dir.path(), &["--ocr-model", &model_arg, "--ocr-cells", &cells_arg]);
    let http = client();
    for ((img, label), want) in samples.iter().zip(&expect) {
        let text = submit(&http, &server.base, &key, img, &[("regsense", "1")]).await.expect("submit");
        let id = text.strip_prefix("OK|").unwrap_or_else(|| panic!("{text}")).to_string();
        let got = wait_final(&http, &server.base, &key, &id, Duration::from_secs(30)).await;
        assert_eq!(&got, want, "label {label}");
    }

    for (flag, missing) in [("--ocr-cells", "/nonexistent-cells"), ("--ocr-model", "/nonexistent-model")] {
        let bad = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", flag, missing, "--data-dir"])
            .arg(dir.path().join("other"))
            .output()
            .expect("run");
        assert!(!bad.status.success(), "{flag} {missing} started");
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(err.contains("loading the OCR model") && err.contains(missing), "{flag}: {err}");
    }
}
