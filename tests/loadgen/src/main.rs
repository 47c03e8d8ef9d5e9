//! # loadgen
//!
//! A bounded load generator for the classic API of `captchad` (or any
//! 2Captcha-compatible server on loopback). Two phases in one run:
//!
//! 1. **latency**: one client, sequential image tasks, polled every
//!    `--latency-poll-ms`; gives the end-to-end time of a task on an idle server.
//! 2. **throughput**: `--clients` concurrent clients in a closed loop for
//!    `--seconds`; gives submit and poll latency under load and tasks/s.
//!
//! It refuses any target that is not a loopback address, and every loop is
//! bounded in count and time.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::Parser;
use hdrhistogram::Histogram;
use tokio::sync::Mutex;

#[derive(Parser, Debug)]
#[command(about = "Load generator for the classic in.php/res.php API (loopback only)")]
struct Args {
    /// Base URL of the server, e.g. http://127.0.0.1:8080
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key (32 characters).
    #[arg(long)]
    key: String,
    /// A folder of images (png/jpg/gif) to submit, cycled.
    #[arg(long)]
    images: PathBuf,
    /// Concurrent clients in the throughput phase.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Length of the throughput phase.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Tasks in the sequential latency phase.
    #[arg(long, default_value_t = 200)]
    latency_tasks: usize,
    /// Poll interval of the latency phase.
    #[arg(long, default_value_t = 2)]
    latency_poll_ms: u64,
    /// Poll interval of each client in the throughput phase.
    #[arg(long, default_value_t = 20)]
    poll_ms: u64,
    /// PID of the server, to read its resident memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Give up on a task after this long.
    #[arg(long, default_value_t = 30)]
    task_timeout_s: u64,
}

struct Stats {
    submit: Histogram<u64>,
    poll: Histogram<u64>,
    e2e: Histogram<u64>,
    errors: u64,
}

impl Stats {
    fn new() -> Self {
        let h = || Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("static bounds");
        Stats { submit: h(), poll: h(), e2e: h(), errors: 0 }
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn load_images(dir: &PathBuf) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        if matches!(ext.as_str(), "png" | "jpg" | "jpeg" | "gif") {
            let bytes = std::fs::read(&path)?;
            out.push(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
    }
    if out.is_empty() {
        bail!("no images in {}", dir.display());
    }
    Ok(out)
}

/// One task: submit, then poll until ready. Returns (submit µs, poll µs each, e2e µs).
async fn one_task(
    http: &reqwest::Client,
    args: &Args,
    image_b64: &str,
    poll_every: Duration,
) -> Result<(u64, Vec<u64>, u64)> {
    let start = Instant::now();
    let resp = http
        .post(format!("{}/in.php", args.url))
        .form(&[("key", args.key.as_str()), ("method", "base64"), ("json", "1"), ("body", image_b64)])
        .send()
        .await?
        .text()
        .await?;
    let submit_us = start.elapsed().as_micros() as u64;
    let v: serde_json::Value = serde_json::from_str(&resp).with_context(|| resp.clone())?;
    if v["status"] != 1 {
        bail!("submit refused: {resp}");
    }
    let id = v["request"].as_str().map(str::to_string).unwrap_or_else(|| v["request"].to_string());
    let mut polls = Vec::new();
    let deadline = start + Duration::from_secs(args.task_timeout_s);
    loop {
        tokio::time::sleep(poll_every).await;
        let t = Instant::now();
        let resp = http
            .get(format!("{}/res.php", args.url))
            .query(&[("key", args.key.as_str()), ("action", "get"), ("id", id.as_str()), ("json", "1")])
            .send()
            .await?
            .text()
            .await?;
        polls.push(t.elapsed().as_micros() as u64);
        let v: serde_json::Value = serde_json::from_str(&resp).with_context(|| resp.clone())?;
        if v["status"] == 1 || v["request"] == "ERROR_CAPTCHA_UNSOLVABLE" {
            return Ok((submit_us, polls, start.elapsed().as_micros() as u64));
        }
        if v["request"] != "CAPCHA_NOT_READY" {
            bail!("poll error: {resp}");
        }
        if Instant::now() > deadline {
            bail!("task {id} not ready after {}s", args.task_timeout_s);
        }
    }
}

fn record(stats: &mut Stats, r: Result<(u64, Vec<u64>, u64)>) {
    match r {
        Ok((s, polls, e)) => {
            let _ = stats.submit.record(s.max(1));
            for p in polls {
                let _ = stats.poll.record(p.max(1));
            }
            let _ = stats.e2e.record(e.max(1));
        }
        Err(e) => {
            stats.errors += 1;
            if stats.errors <= 5 {
                eprintln!("error: {e:#}");
            }
        }
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn report(name: &str, stats: &Stats, wall: Duration) {
    let tasks = stats.e2e.len();
    println!(
        "| {name} | {tasks} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} |",
        stats.errors,
        tasks as f64 / wall.as_secs_f64(),
        ms(&stats.submit, 0.5),
        ms(&stats.submit, 0.99),
        ms(&stats.poll, 0.5),
        ms(&stats.poll, 0.99),
        ms(&stats.e2e, 0.5),
        ms(&stats.e2e, 0.99),
    );
}

fn ensure_loopback(url: &str) -> Result<()> {
    let u = reqwest::Url::parse(url)?;
    let host = u.host_str().context("url has no host")?;
    let ok = host == "localhost"
        || host.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false);
    if !ok {
        bail!("refusing to load {host}: loopback only");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    ensure_loopback(&args.url)?;
    let images = Arc::new(load_images(&args.images)?);
    let http =
        reqwest::Client::builder().pool_max_idle_per_host(args.clients + 8).timeout(Duration::from_secs(30)).build()?;

    let idle_rss = args.server_pid.and_then(rss_kib);

    // Phase 1: sequential latency.
    let mut lat = Stats::new();
    let t0 = Instant::now();
    for i in 0..args.latency_tasks {
        let r = one_task(&http, &args, &images[i % images.len()], Duration::from_millis(args.latency_poll_ms)).await;
        record(&mut lat, r);
    }
    let lat_wall = t0.elapsed();

    // Phase 2: closed-loop throughput.
    let stats = Arc::new(Mutex::new(Stats::new()));
    let counter = Arc::new(AtomicU64::new(0));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let t1 = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..args.clients {
        let (http, args, images, stats, counter) =
            (http.clone(), args.clone(), images.clone(), stats.clone(), counter.clone());
        handles.push(tokio::spawn(async move {
            while Instant::now() < end {
                let i = counter.fetch_add(1, Ordering::Relaxed) as usize;
                let r = one_task(&http, &args, &images[i % images.len()], Duration::from_millis(args.poll_ms)).await;
                record(&mut *stats.lock().await, r);
            }
        }));
    }
    if let Some(pid) = args.server_pid {
        let peak = peak_rss.clone();
        tokio::spawn(async move {
            while Instant::now() < end {
                if let Some(r) = rss_kib(pid) {
                    peak.fetch_max(r, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    for h in handles {
        let _ = h.await;
    }
    let thr_wall = t1.elapsed();
    let stats = stats.lock().await;

    println!("| phase | tasks | errors | tasks/s | submit p50 ms | submit p99 ms | poll p50 ms | poll p99 ms | e2e p50 ms | e2e p99 ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    report("sequential, 1 client", &lat, lat_wall);
    report(&format!("closed loop, {} clients", args.clients), &stats, thr_wall);
    if let Some(idle) = idle_rss {
        println!(
            "\nserver RSS: idle {:.1} MiB, peak under load {:.1} MiB",
            idle as f64 / 1024.0,
            peak_rss.load(Ordering::Relaxed) as f64 / 1024.0
        );
    }
    if lat.errors + stats.errors > 0 {
        bail!("{} tasks failed", lat.errors + stats.errors);
    }
    Ok(())
}
