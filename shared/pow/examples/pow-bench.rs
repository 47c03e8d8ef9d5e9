//! pow-bench: N native solves per widget page, p50/p95 latency and tokens/s.
//!
//!   cargo run --release -p captcha-pow --example pow-bench -- [--n 20] [--threads 0] [--base http://127.0.0.1:PORT] [--pages /altcha-v1,/cap]
//!
//! Without `--base` it starts `node tests/web/server.js --port 0` (run
//! `tests/web/install.sh` first) and stops it at the end. Requests go to
//! 127.0.0.0/8 only (the policy allows just that range).

use std::time::{Duration, Instant};

use captcha_netguard::{GuardedClient, NetPolicy};
use captcha_pow::{solve, SolveOptions, Widget};
use widget_site::WidgetSite;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), String> {
    let mut n = 20usize;
    let mut threads = 0usize;
    let mut base = None;
    let mut pages = vec!["/altcha-v1".to_string(), "/altcha-v2".into(), "/altcha".into(), "/cap".into()];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--n" => n = val()?.parse().map_err(|_| "--n: a number")?,
            "--threads" => threads = val()?.parse().map_err(|_| "--threads: a number")?,
            "--base" => base = Some(val()?),
            "--pages" => pages = val()?.split(',').map(str::to_string).collect(),
            "-h" | "--help" => {
                println!("pow-bench [--n 20] [--threads 0] [--base URL] [--pages /altcha-v1,/altcha-v2,/altcha,/cap]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let (_site, base) = match base {
        Some(b) => (None, b),
        None => {
            let s = WidgetSite::start()?;
            let b = s.base().to_string();
            (Some(s), b)
        }
    };
    let client = GuardedClient::new(NetPolicy::parse_list("127.0.0.0/8")?, Duration::from_secs(30), "pow-bench")
        .map_err(|e| e.to_string())?;
    let opts = SolveOptions { threads, ..SolveOptions::default() };
    println!(
        "{:<12} {:>4} {:>10} {:>10} {:>10} {:>12} {:>14}",
        "page", "n", "p50", "p95", "tokens/s", "attempts", "attempts/s"
    );
    for page in &pages {
        let url = format!("{base}{page}");
        let mut times = Vec::with_capacity(n);
        let (mut attempts, mut compute) = (0u64, Duration::ZERO);
        let wall = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            let sol = solve(&client, Widget::Auto, &url, &opts).await.map_err(|e| format!("{page}: {e}"))?;
            times.push(t.elapsed());
            attempts += sol.attempts;
            compute += sol.compute;
        }
        let wall = wall.elapsed();
        times.sort();
        println!(
            "{:<12} {:>4} {:>10.1?} {:>10.1?} {:>10.2} {:>12} {:>14.0}",
            page,
            n,
            pct(&times, 0.5),
            pct(&times, 0.95),
            n as f64 / wall.as_secs_f64(),
            attempts / n.max(1) as u64,
            attempts as f64 / compute.as_secs_f64().max(1e-9)
        );
    }
    Ok(())
}
