//! token-bench: ALTCHA and Cap tokens through both engines in ONE run, so the
//! ratios are comparable on a noisy machine: the honest Chromium pool
//! (`captcha-browser`) and the native proof-of-work solver (`captcha-pow`).
//!
//!   cargo run --release -p captcha-browser --example token-bench -- [--n 10] [--concurrency 4]
//!
//! Starts the widget site (`node tests/web/server.js`, run `tests/web/install.sh`
//! first) on 127.0.0.1 and a warm pool (1 browser, 4 pages). Per page and
//! engine: N sequential solves → p50/p95 per token; then N solves with
//! `--concurrency` in flight → tokens/s; CPU-seconds per token (this process
//! plus every descendant, from /proc: utime+stime, so processes that exit
//! mid-run are undercounted); and the browser's PSS. Every token is checked at
//! the site's verify endpoint, so a wrong answer cannot pass as a fast one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use captcha_browser::{widgets, BrowserPool, PoolConfig};
use captcha_netguard::{GuardedClient, NetPolicy};
use captcha_pow::{solve, SolveOptions, Widget};
use serde_json::json;
use widget_site::WidgetSite;

/// CPU seconds of `root` and all its descendants except the `skip` subtree
/// (Linux /proc): utime+stime of each live process plus cutime+cstime, the
/// CPU of children it has already reaped (Chromium's short-lived renderers).
fn tree_cpu_seconds(root: u32, skip: u32) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut procs = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let Some(ppid) = f.get(1).and_then(|v| v.parse::<u32>().ok()) else { continue };
        let cpu: f64 = (11..=14).filter_map(|i| f.get(i)?.parse::<f64>().ok()).sum();
        if pid == skip {
            continue;
        }
        procs.push((pid, ppid, cpu / tick));
    }
    let mut inside = vec![root];
    let mut total = 0.0;
    let mut changed = true;
    let mut counted = std::collections::HashSet::new();
    while changed {
        changed = false;
        for (pid, ppid, cpu) in &procs {
            if (inside.contains(ppid) || *pid == root) && counted.insert(*pid) {
                inside.push(*pid);
                total += cpu;
                changed = true;
            }
        }
    }
    total
}

/// PSS in MiB of `root` and its descendants.
fn tree_pss_mib(root: u32) -> f64 {
    let mut kids = vec![root];
    let mut i = 0;
    while i < kids.len() {
        let p = kids[i];
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")) {
            kids.extend(s.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
        i += 1;
    }
    kids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .filter_map(|s| {
            s.lines().find(|l| l.starts_with("Pss:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .sum::<f64>()
        / 1024.0
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[(((v.len() - 1) as f64) * p).round() as usize]
}

#[derive(Clone, Copy, PartialEq)]
enum Engine {
    Browser,
    Native,
}

async fn one(engine: Engine, pool: &BrowserPool, client: &GuardedClient, base: &str, page: &str) -> String {
    let url = format!("{base}{page}");
    let cap = page.starts_with("/cap");
    match engine {
        Engine::Browser if cap => widgets::cap(pool, &url).await.expect("browser cap"),
        Engine::Browser => widgets::altcha(pool, &url).await.expect("browser altcha"),
        Engine::Native => {
            let w = if cap { Widget::Cap } else { Widget::Altcha };
            solve(client, w, &url, &SolveOptions::default()).await.expect("native").token
        }
    }
}

async fn check(client: &GuardedClient, base: &str, page: &str, token: &str) {
    let (path, body) = if page.starts_with("/cap") {
        ("/cap/verify", json!({ "token": token }))
    } else {
        ("/altcha/verify", json!({ "payload": token }))
    };
    let v: serde_json::Value = client
        .post(&format!("{base}{path}"))
        .expect("url")
        .json(&body)
        .send()
        .await
        .expect("verify")
        .json()
        .await
        .expect("json");
    assert_eq!(v["ok"], true, "{page}: the site refused a token: {v}");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut n = 10usize;
    let mut concurrency = 4usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--n" => n = args.next().and_then(|v| v.parse().ok()).expect("--n N"),
            "--concurrency" => concurrency = args.next().and_then(|v| v.parse().ok()).expect("--concurrency N"),
            other => panic!("unknown argument {other}"),
        }
    }
    let site = WidgetSite::start().unwrap_or_else(|e| panic!("{e}"));
    let base = site.base().to_string();
    let site_pid = site.pid();
    let policy = NetPolicy::parse_list("127.0.0.0/8").expect("policy");
    let client = GuardedClient::new(policy.clone(), Duration::from_secs(30), "token-bench").expect("client");
    let pool = Arc::new(
        BrowserPool::new(PoolConfig {
            policy,
            max_browsers: 1,
            pages_per_browser: concurrency.max(1),
            host_resolver_rules: Some("MAP * ~NOTFOUND , EXCLUDE 127.0.0.1".into()),
            proxy_server: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        })
        .expect("pool"),
    );
    let launch = pool.warm_up().await.expect("warm up");
    let me = std::process::id();
    let browser_pid = pool.browser_pids().await.first().copied().unwrap_or(0);
    println!(
        "machine: {} cores; browser launch {:.0} ms; idle browser PSS {:.0} MiB",
        std::thread::available_parallelism().map_or(1, |c| c.get()),
        launch.as_secs_f64() * 1e3,
        tree_pss_mib(browser_pid)
    );
    println!(
        "| page | engine | p50 s | p95 s | tokens/s ({concurrency} in flight) | CPU-s/token | browser PSS MiB (busy) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for page in ["/altcha-v1", "/altcha", "/cap"] {
        let mut p50s = Vec::new();
        for engine in [Engine::Browser, Engine::Native] {
            // One untimed warm-up solve per engine and page.
            let t = one(engine, &pool, &client, &base, page).await;
            check(&client, &base, page, &t).await;
            let cpu0 = tree_cpu_seconds(me, site_pid);
            let mut lat = Vec::with_capacity(n);
            for _ in 0..n {
                let t0 = Instant::now();
                let token = one(engine, &pool, &client, &base, page).await;
                lat.push(t0.elapsed().as_secs_f64());
                check(&client, &base, page, &token).await;
            }
            let cpu_per = (tree_cpu_seconds(me, site_pid) - cpu0) / n as f64;
            let t0 = Instant::now();
            let mut set = tokio::task::JoinSet::new();
            let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
            let mut pss_busy = 0.0f64;
            for _ in 0..n {
                let (pool, client, base, sem) = (pool.clone(), client.clone(), base.clone(), sem.clone());
                set.spawn(async move {
                    let _permit = sem.acquire_owned().await.expect("semaphore");
                    let token = one(engine, &pool, &client, &base, page).await;
                    check(&client, &base, page, &token).await;
                });
            }
            if engine == Engine::Browser {
                tokio::time::sleep(Duration::from_millis(500)).await;
                pss_busy = tree_pss_mib(browser_pid);
            }
            while let Some(r) = set.join_next().await {
                r.expect("solve task");
            }
            let rate = n as f64 / t0.elapsed().as_secs_f64();
            let p50 = pct(&mut lat, 0.5);
            let p95 = pct(&mut lat, 0.95);
            p50s.push(p50);
            let name = if engine == Engine::Browser { "browser" } else { "native" };
            let pss = if engine == Engine::Browser { format!("{pss_busy:.0}") } else { "—".into() };
            println!("| {page} | {name} | {p50:.3} | {p95:.3} | {rate:.2} | {cpu_per:.2} | {pss} |");
        }
        println!("|  | native speed-up (p50) | {:.0}× | | | | |", p50s[0] / p50s[1].max(1e-9));
    }
    pool.shutdown().await;
}
