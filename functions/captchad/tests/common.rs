//! Starting the real `captchad` binary on a temporary data dir, on loopback.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_captchad");

/// A running server; killed (SIGKILL) on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    /// Starts `captchad serve` on a free port and waits until it listens.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start captchad");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines.next().expect("captchad exited before listening").expect("read stdout");
            if let Some(addr) = line.strip_prefix("Listening on ") {
                break addr.to_string();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, base }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `captchad account create`: the key is alone on the first line.
pub fn create_account(data_dir: &Path, balance: &str) -> String {
    create_account_with_secret(data_dir, balance).0
}

pub fn validation_dir(style: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/ocr/validation").join(style)
}

/// (file bytes, label) of the first `n` images of a validation style.
pub fn samples(style: &str, n: usize) -> Vec<(Vec<u8>, String)> {
    let dir = validation_dir(style);
    let labels = std::fs::read_to_string(dir.join("labels.tsv")).expect("labels.tsv");
    labels
        .lines()
        .take(n)
        .map(|l| {
            let (name, label) = l.split_once('\t').expect("name<TAB>label");
            (std::fs::read(dir.join(name)).expect("image"), label.to_string())
        })
        .collect()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
}

/// Submits an image with `method=base64`; returns the raw response text.
pub async fn submit(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    image: &[u8],
    extra: &[(&str, &str)],
) -> reqwest::Result<String> {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(image);
    let mut form = vec![("key", key), ("method", "base64"), ("body", body.as_str())];
    form.extend_from_slice(extra);
    http.post(format!("{base}/in.php")).form(&form).send().await?.text().await
}

pub async fn res(http: &reqwest::Client, base: &str, query: &[(&str, &str)]) -> reqwest::Result<String> {
    http.get(format!("{base}/res.php")).query(query).send().await?.text().await
}

/// Polls `action=get` until the answer is final; returns `OK|…` or the error code.
pub async fn wait_final(http: &reqwest::Client, base: &str, key: &str, id: &str, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(text) = res(http, base, &[("key", key), ("action", "get"), ("id", id)]).await {
            if text != "CAPCHA_NOT_READY" {
                return text;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "task {id} not final within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn balance(http: &reqwest::Client, base: &str, key: &str) -> String {
    res(http, base, &[("key", key), ("action", "getbalance")]).await.expect("getbalance")
}

/// The balance once it reads `want`, or what it reads after 5 s. A task given
/// up is marked unsolvable first and its hold released next (two writes), so a
/// poller can see `ERROR_CAPTCHA_UNSOLVABLE` a moment before the held amount
/// is back in the balance.
pub async fn settled_balance(http: &reqwest::Client, base: &str, key: &str, want: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = balance(http, base, key).await;
        if got == want || tokio::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `captchad account create`, returning (key, callback signing secret).
pub fn create_account_with_secret(data_dir: &Path, balance: &str) -> (String, String) {
    let out = Command::new(BIN)
        .args(["account", "create", "--balance", balance, "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run account create");
    assert!(out.status.success(), "account create failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let key = stdout.lines().next().expect("a first line").to_string();
    assert_eq!(key.len(), 32, "key {key:?}");
    let secret = stdout
        .lines()
        .find_map(|l| l.strip_prefix("callback signing secret "))
        .expect("the secret is printed")
        .to_string();
    (key, secret)
}

/// The widget test site (`tests/web`, real altcha-lib and @cap.js/server under
/// Node) on a free loopback port; killed on drop.
pub fn widget_site() -> widget_site::WidgetSite {
    widget_site::WidgetSite::start().unwrap_or_else(|e| panic!("{e}"))
}
