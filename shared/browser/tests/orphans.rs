//! If the process that owns the pool is SIGKILLed (no destructors run),
//! Chromium must die with it: the `setpriv --pdeathsig KILL` wrapper.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Run by `chromium_dies_with_a_killed_owner` in a child process: launches a
/// pool, prints the Chromium PID, then waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process for chromium_dies_with_a_killed_owner"]
async fn owner_helper() {
    let pool = pool(config(loopback(), Duration::from_secs(20)));
    pool.warm_up().await.expect("launch");
    let pid = pool.browser_pids().await[0];
    println!("CHROMIUM_PID {pid}");
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[test]
fn chromium_dies_with_a_killed_owner() {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["--ignored", "--exact", "owner_helper", "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn helper");
    let helper = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let mut pid = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        // libtest may print "test owner_helper ... " on the same line first.
        if let Some(p) = line.split("CHROMIUM_PID ").nth(1) {
            pid = p.trim().parse::<u32>().ok();
            break;
        }
    }
    let pid = match pid {
        Some(p) => p,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("helper printed no Chromium PID (run shared/browser/install-chromium.sh)");
        }
    };
    let tree = process_tree(pid);
    assert!(alive(pid));
    // SIGKILL: no destructor, no Drop, no cleanup in the owner.
    child.kill().expect("kill helper");
    let _ = child.wait();
    let until = Instant::now() + Duration::from_secs(5);
    while tree.iter().any(|p| alive(*p)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<u32> = tree.iter().copied().filter(|p| alive(*p)).collect();
    // Never leave a browser behind, even when the assertion fails.
    for p in &left {
        // SAFETY: kill(2) on processes of the Chromium this test's helper started.
        unsafe { libc::kill(*p as libc::pid_t, libc::SIGKILL) };
    }
    assert!(left.is_empty(), "chromium outlived its owner: {left:?}");

    // The dead owner's profile and wrapper directories are swept by the next pool.
    let owner_dirs = || -> Vec<std::path::PathBuf> {
        let prefix = format!("captcha-browser-{helper}-");
        std::fs::read_dir(std::env::temp_dir())
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(!owner_dirs().is_empty(), "expected the killed owner's directories");
    let _next = pool(config(loopback(), Duration::from_secs(5)));
    assert!(owner_dirs().is_empty(), "left: {:?}", owner_dirs());
}
