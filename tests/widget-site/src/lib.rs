//! `widget-site` owns starting the local widget test site for tests and
//! benchmarks: `node tests/web/server.js --port 0`, which serves real
//! altcha-lib and @cap.js/server widgets on 127.0.0.1 and prints
//! `LISTENING <port>` once bound. The process is killed when the
//! [`WidgetSite`] is dropped. Plain `std` (no async runtime), so sync
//! benches and tokio tests use the same code.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

/// How long the site may take to print its port.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running widget site; killed on drop.
pub struct WidgetSite {
    child: Child,
    base: String,
}

/// `tests/web` in this checkout.
pub fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web")
}

impl WidgetSite {
    /// Runs `tests/web/install.sh` (idempotent `npm ci`) once per process, so
    /// tests started in parallel never run two `npm ci` at once, then
    /// [`WidgetSite::start`].
    pub fn install_and_start() -> Result<WidgetSite, String> {
        static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
        INSTALLED
            .get_or_init(|| {
                let script = web_dir().join("install.sh");
                let st =
                    Command::new("bash").arg(&script).status().map_err(|e| format!("run {}: {e}", script.display()))?;
                if st.success() {
                    Ok(())
                } else {
                    Err(format!("{} failed ({st}); it needs node and npm", script.display()))
                }
            })
            .clone()?;
        Self::start()
    }

    /// Starts the site; its npm packages must be installed (`tests/web/install.sh`).
    pub fn start() -> Result<WidgetSite, String> {
        let dir = web_dir();
        for pkg in ["altcha-lib", "@cap.js/server"] {
            if !dir.join("node_modules").join(pkg).is_dir() {
                return Err(format!("tests/web/node_modules/{pkg} is missing: run tests/web/install.sh"));
            }
        }
        let mut child = Command::new("node")
            .args(["server.js", "--port", "0"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start node (>= 20) tests/web/server.js: {e}"))?;
        let Some(stdout) = child.stdout.take() else {
            return Err("node's stdout was not captured".into());
        };
        // Send the port, then keep draining stdout so the server never blocks on a full pipe.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut port_sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !port_sent {
                    let port =
                        line.trim().strip_prefix("LISTENING ").map(|p| p.parse::<u16>().map_err(|_| line.clone()));
                    if let Some(port) = port {
                        let _ = tx.send(port);
                        port_sent = true;
                    }
                }
            }
        });
        // From here on `site` owns the child, so every error path below kills it.
        let mut site = WidgetSite { child, base: String::new() };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(port)) => {
                site.base = format!("http://127.0.0.1:{port}");
                Ok(site)
            }
            Ok(Err(line)) => Err(format!("widget site printed a bad port line {line:?}")),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(format!("widget site printed no port within {START_TIMEOUT:?}"))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err("widget site exited before printing its port".into()),
        }
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The Node process id (benches subtract its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for WidgetSite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_a_page_on_loopback_and_stops_on_drop() {
        let site = WidgetSite::install_and_start().expect("widget site");
        let addr = site.base().strip_prefix("http://").expect("http base").to_string();
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        use std::io::{Read, Write};
        write!(s, "GET /plain HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").expect("write");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        assert!(resp.starts_with("HTTP/1.1 200"), "{}", resp.lines().next().unwrap_or(""));
        drop(site);
        assert!(std::net::TcpStream::connect(&addr).is_err(), "site still listening after drop");
    }
}
