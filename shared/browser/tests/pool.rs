//! The pool against a tiny local site (127.0.0.1 only).

mod common;

use std::time::{Duration, Instant};

use captcha_browser::widgets::{self, TokenWidget};
use captcha_browser::BrowserError;
use captcha_netguard::NetPolicy;
use common::*;

/// Clicks the button on /click and returns the token the page sets.
async fn solve_click(pool: &captcha_browser::BrowserPool, url: &str) -> Result<String, BrowserError> {
    let url = url.to_string();
    pool.run(|tp| async move {
        tp.goto(&url).await?;
        tp.click_at(160.0, 130.0).await?;
        tp.poll_string("document.getElementById('out').textContent", Duration::from_millis(50)).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launches_and_solves_a_local_page() {
    let _s = serial().await;
    let site = site().await;
    let pool = pool(config(loopback(), Duration::from_secs(20)));
    let launch = pool.warm_up().await.expect("launch");
    let pss_kib = |pid: u32| -> u64 {
        process_tree(pid)
            .iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
            .filter_map(|s| {
                s.lines().find(|l| l.starts_with("Pss:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .sum()
    };
    let pid = pool.browser_pids().await[0];
    eprintln!("idle browser: {} processes, PSS {} MiB", process_tree(pid).len(), pss_kib(pid) / 1024);
    let t = Instant::now();
    let tok = solve_click(&pool, &site.url("/click")).await.expect("token");
    eprintln!("launch {launch:?}, first task {:?}", t.elapsed());
    assert!(tok.starts_with("tok-"), "{tok}");
    let t = Instant::now();
    let tok2 = solve_click(&pool, &site.url("/click")).await.expect("token");
    eprintln!("second task {:?}", t.elapsed());
    assert_ne!(tok, tok2);
    // The browser says what it is.
    let ua = pool
        .run(|tp| async move {
            let v = tp.eval("navigator.userAgent + ' webdriver=' + navigator.webdriver").await?;
            Ok(v.as_str().unwrap_or_default().to_string())
        })
        .await
        .expect("ua");
    assert!(ua.contains("HeadlessChrome") && ua.ends_with("webdriver=true"), "{ua}");
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_share_no_cookies_or_storage() {
    let _s = serial().await;
    let site = site().await;
    let pool = pool(config(loopback(), Duration::from_secs(20)));
    let url = site.url("/never");
    let read = "document.cookie + '|' + (localStorage.getItem('k') || '') + '|' + (sessionStorage.getItem('k') || '')";
    let write = "document.cookie = 'k=v; max-age=3600; path=/'; localStorage.setItem('k','v'); sessionStorage.setItem('k','v'); 'ok'";

    // One task writes and reads back; a later task sees nothing.
    let (u, r, w) = (url.clone(), read.to_string(), write.to_string());
    let first = pool
        .run(|tp| async move {
            tp.goto(&u).await?;
            tp.eval(&w).await?;
            Ok(tp.eval(&r).await?.as_str().unwrap_or_default().to_string())
        })
        .await
        .expect("first");
    assert_eq!(first, "k=v|v|v");
    let (u, r) = (url.clone(), read.to_string());
    let second = pool
        .run(|tp| async move {
            tp.goto(&u).await?;
            Ok(tp.eval(&r).await?.as_str().unwrap_or_default().to_string())
        })
        .await
        .expect("second");
    assert_eq!(second, "||");

    // Two concurrent tasks: the reader starts after the writer wrote and still sees nothing.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (u1, w1) = (url.clone(), write.to_string());
    let writer = pool.run(|tp| async move {
        tp.goto(&u1).await?;
        tp.eval(&w1).await?;
        let _ = tx.send(());
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(String::new())
    });
    let (u2, r2) = (url.clone(), read.to_string());
    let reader = pool.run(|tp| async move {
        let _ = rx.await;
        tp.goto(&u2).await?;
        Ok(tp.eval(&r2).await?.as_str().unwrap_or_default().to_string())
    });
    let (w, r) = tokio::join!(writer, reader);
    w.expect("writer");
    assert_eq!(r.expect("reader"), "||");
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_is_enforced() {
    let _s = serial().await;
    let site = site().await;
    let pool = pool(config(loopback(), Duration::from_secs(20)));
    pool.warm_up().await.expect("launch");
    let url = site.url("/never");
    let t = Instant::now();
    let r = pool
        .run_with_deadline(Duration::from_secs(2), |tp| async move {
            tp.goto(&url).await?;
            tp.poll_string("document.getElementById('out').textContent", Duration::from_millis(50)).await
        })
        .await;
    assert_eq!(r, Err(BrowserError::Deadline));
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    // A task that ignores the page entirely is cut off too.
    let t = Instant::now();
    let r: Result<(), _> = pool
        .run_with_deadline(Duration::from_secs(1), |_tp| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        })
        .await;
    assert_eq!(r, Err(BrowserError::Deadline));
    assert!(t.elapsed() < Duration::from_secs(3));
    // And the pool is still usable.
    solve_click(&pool, &site.url("/click")).await.expect("after deadline");
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_browser_fails_the_task_and_is_relaunched() {
    let _s = serial().await;
    let site = site().await;
    let pool = pool(config(loopback(), Duration::from_secs(30)));
    pool.warm_up().await.expect("launch");
    let pids = pool.browser_pids().await;
    assert_eq!(pids.len(), 1);
    let old = pids[0];

    let url = site.url("/never");
    let t = Instant::now();
    let task = pool.run(|tp| async move {
        tp.goto(&url).await?;
        tp.poll_string("document.getElementById('out').textContent", Duration::from_millis(50)).await
    });
    let killer = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // SAFETY: kill(2) on the Chromium PID this test's pool launched.
        unsafe { libc::kill(old as libc::pid_t, libc::SIGKILL) };
    };
    let (r, ()) = tokio::join!(task, killer);
    assert_eq!(r, Err(BrowserError::Crashed));
    assert!(t.elapsed() < Duration::from_secs(10), "crash noticed after {:?}", t.elapsed());

    let t = Instant::now();
    let tok = solve_click(&pool, &site.url("/click")).await.expect("relaunched");
    eprintln!("relaunch + task {:?}", t.elapsed());
    assert!(tok.starts_with("tok-"));
    let pids = pool.browser_pids().await;
    assert_eq!(pids.len(), 1);
    assert_ne!(pids[0], old);
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_outside_the_policy_are_refused() {
    let _s = serial().await;
    let site = site().await;
    let strict = pool(config(NetPolicy::strict(), Duration::from_secs(20)));
    for url in [site.url("/click"), "http://10.0.0.1/".into(), "http://169.254.169.254/latest/meta-data".into()] {
        let r = solve_click(&strict, &url).await;
        assert!(matches!(r, Err(BrowserError::Refused(_))), "{url}: {r:?}");
    }
    let loose = pool(config(loopback(), Duration::from_secs(20)));
    for url in
        ["file:///etc/passwd", "chrome://version", "javascript:alert(1)", "data:text/html,hi", "ftp://127.0.0.1/"]
    {
        let r = solve_click(&loose, url).await;
        assert!(matches!(r, Err(BrowserError::Refused(_))), "{url}: {r:?}");
    }
    strict.shutdown().await;
    loose.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_from_the_page_are_checked_too() {
    let _s = serial().await;
    let site = site().await;
    // Chromium itself may resolve 127.0.0.2 here, so only the pool's guard stands in the way.
    let cfg = |policy| {
        let mut c = config(policy, Duration::from_secs(20));
        c.host_resolver_rules = Some("MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE 127.0.0.2".into());
        c
    };
    // 127.0.0.1 only: the page may load, but not reach 127.0.0.2.
    let pool = pool(cfg(NetPolicy::parse_list("127.0.0.1/32").expect("policy")));
    let url = site.url("/guard");
    let out = pool
        .run(|tp| async move {
            tp.goto(&url).await?;
            tp.poll_string("document.getElementById('out').textContent", Duration::from_millis(50)).await
        })
        .await
        .expect("page");
    assert_eq!(out, "blocked");
    assert_eq!(site.other_hits(), 0);
    // A redirect from an allowed page to a refused address is stopped as well.
    let url = site.url("/redirect");
    let r = pool
        .run(|tp| async move {
            tp.goto(&url).await?;
            Ok(tp.eval("location.href").await?.as_str().unwrap_or_default().to_string())
        })
        .await;
    eprintln!("redirect to a refused address: {r:?}");
    assert!(matches!(&r, Err(BrowserError::Refused(_))), "{r:?}");
    assert_eq!(site.other_hits(), 0);
    pool.shutdown().await;
    // Sanity: with 127.0.0.0/8 allowed the same request goes through.
    let pool2 = common::pool(cfg(loopback()));
    let url = site.url("/guard");
    let out = pool2
        .run(|tp| async move {
            tp.goto(&url).await?;
            tp.poll_string("document.getElementById('out').textContent", Duration::from_millis(50)).await
        })
        .await
        .expect("page");
    assert_eq!(out, "reached");
    assert_eq!(site.other_page_paths(), ["/x"]);
    let url = site.url("/redirect");
    pool2.run(|tp| async move { tp.goto(&url).await }).await.expect("redirect followed");
    assert_eq!(site.other_page_paths(), ["/x", "/redirected"]);
    pool2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_chromium_left_after_drop() {
    let _s = serial().await;
    let site = site().await;
    let pool = pool(config(loopback(), Duration::from_secs(20)));
    solve_click(&pool, &site.url("/click")).await.expect("token");
    let pids = pool.browser_pids().await;
    assert_eq!(pids.len(), 1);
    let tree = process_tree(pids[0]);
    assert!(tree.len() > 1, "chromium should have child processes: {tree:?}");
    let profile_dirs = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = profile_dirs(pids[0]);
    let dir =
        cmd.split('\0').find_map(|a| a.strip_prefix("--user-data-dir=")).map(str::to_string).expect("profile dir");
    drop(pool);
    let until = Instant::now() + Duration::from_secs(5);
    while tree.iter().any(|p| alive(*p)) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left: Vec<u32> = tree.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "chromium processes left: {left:?}");
    assert!(!std::path::Path::new(&dir).exists(), "profile dir {dir} left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_on_stand_in_widgets() {
    let _s = serial().await;
    let site = site().await;
    let pool = pool(config(loopback(), Duration::from_secs(20)));
    let a = widgets::altcha(&pool, &site.url("/fake-altcha")).await.expect("altcha");
    assert!(a.starts_with("fake-altcha-"), "{a}");
    let c = widgets::cap(&pool, &site.url("/fake-cap")).await.expect("cap");
    assert!(c.starts_with("fake-cap-"), "{c}");
    let t = widgets::token_widget(&pool, TokenWidget::Turnstile, &site.url("/fake-turnstile"), "local-key")
        .await
        .expect("turnstile");
    assert_eq!(t, "turnstile-local-token");
    assert_eq!(widgets::altcha(&pool, &site.url("/never")).await, Err(BrowserError::NoWidget));
    // A human challenge is not solved; a widget error ends the task at once.
    let t = Instant::now();
    assert_eq!(widgets::altcha(&pool, &site.url("/fake-altcha-code")).await, Err(BrowserError::Unsolvable));
    let r = widgets::cap(&pool, &site.url("/fake-cap-error")).await;
    assert_eq!(r, Err(BrowserError::Widget("instrumentation check failed".into())));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    pool.shutdown().await;

    let short = common::pool(config(loopback(), Duration::from_secs(3)));
    let r =
        widgets::token_widget(&short, TokenWidget::Turnstile, &site.url("/fake-turnstile-never"), "local-key").await;
    assert_eq!(r, Err(BrowserError::Unsolvable));
    short.shutdown().await;
}

#[test]
fn missing_chromium_says_how_to_install() {
    let mut cfg = config(loopback(), Duration::from_secs(5));
    cfg.chromium = "/nonexistent/chromium".into();
    let e = captcha_browser::BrowserPool::new(cfg).expect_err("missing");
    assert!(e.to_string().contains("run shared/browser/install-chromium.sh"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_browser_is_relaunched() {
    let _s = serial().await;
    let site = site().await;
    let mut cfg = config(loopback(), Duration::from_secs(20));
    cfg.health_timeout = Duration::from_secs(1);
    let pool = pool(cfg);
    pool.warm_up().await.expect("launch");
    let old = pool.browser_pids().await[0];
    // SAFETY: SIGSTOP on the Chromium PID this test's pool launched: it stops answering.
    unsafe { libc::kill(old as libc::pid_t, libc::SIGSTOP) };
    let t = Instant::now();
    let tok = solve_click(&pool, &site.url("/click")).await.expect("relaunched after hang");
    eprintln!("hang detected, relaunched and solved in {:?}", t.elapsed());
    assert!(tok.starts_with("tok-"));
    let pids = pool.browser_pids().await;
    assert_eq!(pids.len(), 1);
    assert_ne!(pids[0], old);
    let until = Instant::now() + Duration::from_secs(3);
    while alive(old) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive(old), "hung browser {old} still running");
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_fill_up_before_another_is_launched() {
    let _s = serial().await;
    let site = site().await;
    let mut cfg = config(loopback(), Duration::from_secs(30));
    cfg.max_browsers = 2;
    cfg.pages_per_browser = 2;
    let pool = pool(cfg);
    // Two at once fit in one browser.
    let url = site.url("/click");
    let (a, b) = tokio::join!(solve_click(&pool, &url), solve_click(&pool, &url));
    a.expect("a");
    b.expect("b");
    assert_eq!(pool.browser_pids().await.len(), 1);
    // Four at once need the second browser.
    let t = Instant::now();
    let rs = futures_util::future::join_all((0..4).map(|_| solve_click(&pool, &url))).await;
    eprintln!("4 concurrent tasks on 2 browsers: {:?}", t.elapsed());
    for r in rs {
        r.expect("task");
    }
    assert_eq!(pool.browser_pids().await.len(), 2);
    // Shut down: later tasks are refused, and no process is left.
    let trees: Vec<u32> = pool.browser_pids().await.into_iter().flat_map(process_tree).collect();
    let t = Instant::now();
    pool.shutdown().await;
    eprintln!("shutdown of 2 browsers: {:?}", t.elapsed());
    assert!(trees.iter().all(|p| !alive(*p)), "left: {:?}", trees.iter().filter(|p| alive(**p)).collect::<Vec<_>>());
    assert_eq!(solve_click(&pool, &url).await, Err(BrowserError::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_runs_with_the_network_flags_and_stays_local() {
    let _s = serial().await;
    let site = site().await;
    let netlog = std::env::temp_dir().join(format!("captcha-browser-test-netlog-{}.json", std::process::id()));
    let mut cfg = config(loopback(), Duration::from_secs(20));
    cfg.net_log = Some(netlog.clone());
    let pool = pool(cfg);
    solve_click(&pool, &site.url("/click")).await.expect("token");
    let pid = pool.browser_pids().await[0];
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).expect("cmdline");
    let args: Vec<&str> = cmdline.split('\0').collect();
    for want in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-domain-reliability",
        "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,OptimizationGuideModelDownloading,MediaRouter,DnsOverHttps,AsyncDns,TranslateUI,CertificateTransparencyComponentUpdater",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
        "--enable-automation",
    ] {
        assert!(args.contains(&want), "missing {want}: {args:?}");
    }
    // Idle a little, as background services would wake up, then close (flushes the net log).
    tokio::time::sleep(Duration::from_secs(5)).await;
    pool.shutdown().await;
    let log = std::fs::read_to_string(&netlog).expect("net log");
    if std::env::var_os("KEEP_NETLOG").is_none() {
        let _ = std::fs::remove_file(&netlog);
    }
    // Every URL or host Chromium tried to reach (requests, DNS, sockets).
    let log: serde_json::Value = serde_json::from_str(&log)
        .or_else(|_| serde_json::from_str(&format!("{}]}}", log.trim_end().trim_end_matches(','))))
        .expect("net log json");
    let mut hosts: Vec<String> = Vec::new();
    for ev in log["events"].as_array().map(Vec::as_slice).unwrap_or_default() {
        for key in ["url", "host", "original_url"] {
            if let Some(v) = ev["params"][key].as_str() {
                let rest = v.split_once("://").map_or(v, |(_, r)| r);
                hosts.push(rest.chars().take_while(|c| !matches!(c, '/' | '?' | '#')).collect());
            }
        }
    }
    let foreign: Vec<&String> = hosts.iter().filter(|h| !h.starts_with("127.0.0.1")).collect();
    eprintln!("net log: {} URLs/hosts, all local: {}", hosts.len(), foreign.is_empty());
    assert!(!hosts.is_empty(), "net log shows no traffic at all");
    assert!(foreign.is_empty(), "chromium reached for other hosts: {foreign:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_are_disposed_also_when_the_caller_gives_up() {
    let _s = serial().await;
    let site = site().await;
    let pool = pool(config(loopback(), Duration::from_secs(20)));
    solve_click(&pool, &site.url("/click")).await.expect("token");
    assert_eq!(pool.open_contexts().await.expect("contexts"), 0);
    // The caller drops the task future half-way (client gone, outer timeout).
    let url = site.url("/never");
    let task = pool.run(|tp| async move {
        tp.goto(&url).await?;
        tp.poll_string("document.getElementById('out').textContent", Duration::from_millis(50)).await
    });
    let r = tokio::time::timeout(Duration::from_millis(1500), task).await;
    assert!(r.is_err(), "task should still be running");
    let until = Instant::now() + Duration::from_secs(5);
    let mut open = usize::MAX;
    while Instant::now() < until {
        open = pool.open_contexts().await.expect("contexts");
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open, 0, "context of the dropped task left open");
    pool.shutdown().await;
}
