//! The Chromium pool: processes, isolated contexts, deadlines, relaunch.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use captcha_netguard::NetPolicy;
use chromiumoxide::cdp::browser_protocol::browser::{CloseParams, GetVersionParams};
use chromiumoxide::cdp::browser_protocol::fetch::{
    ContinueRequestParams, EnableParams as FetchEnableParams, EventRequestPaused, FailRequestParams,
};
use chromiumoxide::cdp::browser_protocol::network::ErrorReason;
use chromiumoxide::cdp::browser_protocol::page::AddScriptToEvaluateOnNewDocumentParams;
use chromiumoxide::cdp::browser_protocol::target::{CreateBrowserContextParams, CreateTargetParams};
use chromiumoxide::layout::Point;
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures_util::StreamExt;
use tokio::sync::{watch, Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::timeout_at;

use crate::BrowserError;

/// Where Debian's package puts the real Chromium binary (not the `/usr/bin` wrapper).
pub const DEFAULT_CHROMIUM: &str = "/usr/lib/chromium/chromium";
/// What to do when Chromium is missing.
pub const INSTALL_HINT: &str = "run shared/browser/install-chromium.sh";

/// Features that make Chromium call home even with the usual headless flags.
const DISABLED_FEATURES: &str =
    "NetworkTimeServiceQuerying,OptimizationHints,OptimizationGuideModelDownloading,MediaRouter,DnsOverHttps,AsyncDns,TranslateUI,CertificateTransparencyComponentUpdater";

/// Where background Google services are pointed: nothing listens on port 9 (discard).
const DEAD_LOCAL_URL: &str = "http://127.0.0.1:9";

/// How the pool launches and uses browsers.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The Chromium executable ([`DEFAULT_CHROMIUM`]).
    pub chromium: PathBuf,
    /// At most this many Chromium processes.
    pub max_browsers: usize,
    /// At most this many concurrent tasks (pages) per browser.
    pub pages_per_browser: usize,
    /// Whole-task deadline: waiting for a page slot, loading, solving.
    pub task_deadline: Duration,
    /// `--host-resolver-rules` (e.g. `MAP * ~NOTFOUND , EXCLUDE 127.0.0.1` in tests).
    pub host_resolver_rules: Option<String>,
    /// `--proxy-server` (tests: `http://127.0.0.1:9`, nothing listens there).
    pub proxy_server: Option<String>,
    /// Write Chromium's network log here (`--log-net-log`), for checking
    /// which hosts the browser tried to reach. The pool takes no other
    /// free-form flags: its argument list is fixed.
    pub net_log: Option<PathBuf>,
    /// Which addresses pages may reach.
    pub policy: NetPolicy,
    /// How long Chromium may take to start.
    pub launch_timeout: Duration,
    /// Run renderers in Chromium's sandbox. Pages are untrusted, so keep it on
    /// whenever possible; Chromium refuses the sandbox as root, hence the
    /// default: on unless running as root.
    pub sandbox: bool,
    /// How long a health check (`Browser.getVersion`) may take before the
    /// browser counts as hung and is relaunched.
    pub health_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            chromium: PathBuf::from(DEFAULT_CHROMIUM),
            max_browsers: 1,
            pages_per_browser: 4,
            task_deadline: Duration::from_secs(60),
            host_resolver_rules: None,
            proxy_server: None,
            net_log: None,
            policy: NetPolicy::strict(),
            launch_timeout: Duration::from_secs(20),
            // SAFETY: geteuid(2) has no preconditions.
            sandbox: unsafe { libc::geteuid() } != 0,
            health_timeout: Duration::from_secs(3),
        }
    }
}

/// One running Chromium.
struct Instance {
    browser: Browser,
    pid: u32,
    handler: JoinHandle<()>,
    /// `true` once the CDP connection is gone (handler loop ended).
    dead: watch::Receiver<bool>,
    /// Profile directory, removed when the instance is dropped (after the process is gone).
    profile: Option<tempfile::TempDir>,
    launched_at: Instant,
}

impl Instance {
    fn is_dead(&self) -> bool {
        *self.dead.borrow() || !process_alive(self.pid)
    }

    /// Resolves when the connection to this browser is lost.
    async fn died(&self) {
        let mut rx = self.dead.clone();
        // An error means the sender is gone: the handler task ended, so the browser is gone too.
        let _ = rx.wait_for(|d| *d).await;
    }

    /// SIGKILLs the browser and its helper processes (renderers, zygotes, …);
    /// returns the PIDs signalled.
    fn kill(&self) -> Vec<u32> {
        if self.pid == 0 || !process_alive(self.pid) {
            return Vec::new();
        }
        let tree = process_tree(self.pid);
        for pid in &tree {
            // SAFETY: kill(2) on the browser we spawned (not yet reaped: the Child inside
            // `browser` is only waited on when the Browser is dropped) and its descendants.
            unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            }
        }
        tree
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let mut tree = if self.pid > 0 && process_alive(self.pid) { process_tree(self.pid) } else { Vec::new() };
        if !tree.is_empty() {
            // SIGTERM first: Chromium then shuts down and reaps its own helpers
            // (killed all at once, they linger as zombies of init).
            // SAFETY: kill(2) on the browser we spawned, not yet reaped.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
            }
            let until = Instant::now() + Duration::from_millis(1000);
            while process_alive(self.pid) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            tree.extend(self.kill());
        }
        tree.push(self.pid);
        self.handler.abort();
        // Wait for the processes so the profile directory is not removed under a live one.
        let until = Instant::now() + Duration::from_secs(2);
        while tree.iter().any(|p| process_alive(*p)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Reap our own child (the main process) now rather than leave it to the runtime.
        let _ = self.browser.try_wait();
        if let Some(dir) = self.profile.take() {
            let path = dir.path().to_path_buf();
            if dir.close().is_err() {
                // A last write may race the first attempt.
                std::thread::sleep(Duration::from_millis(50));
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
}

/// A process and all its descendants (children first found by scanning /proc).
fn process_tree(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let Some(i) = stat.rfind(')') else { continue };
            if let Some(ppid) = stat[i + 1..].split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) {
                parents.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parents.iter().filter(|(c, pp)| *pp == p && *c != root).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

/// Whether a process exists and is not a zombie.
pub(crate) fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => match stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()) {
            Some(state) => state != "Z" && state != "X",
            None => true,
        },
        Err(_) => false,
    }
}

struct Slot {
    pages: Arc<Semaphore>,
    instance: Mutex<Option<Arc<Instance>>>,
}

/// A pool of honest headless Chromium browsers. Build it once per process.
pub struct BrowserPool {
    config: PoolConfig,
    args: Vec<(String, Option<String>)>,
    /// Holds the `setpriv --pdeathsig KILL` wrapper script.
    wrapper_dir: tempfile::TempDir,
    wrapper: PathBuf,
    total: Arc<Semaphore>,
    slots: Vec<Slot>,
    closed: AtomicBool,
}

impl std::fmt::Debug for BrowserPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserPool").field("config", &self.config).finish_non_exhaustive()
    }
}

impl BrowserPool {
    /// Checks the configuration and that Chromium exists; browsers are
    /// launched on first use (or by [`BrowserPool::warm_up`]).
    pub fn new(config: PoolConfig) -> Result<BrowserPool, BrowserError> {
        if !config.chromium.is_file() {
            return Err(BrowserError::ChromiumMissing(config.chromium.display().to_string()));
        }
        if config.max_browsers == 0 || config.pages_per_browser == 0 {
            return Err(BrowserError::Config("max_browsers and pages_per_browser must be at least 1".into()));
        }
        let args = build_args(&config)?;
        sweep_stale_dirs();
        let wrapper_dir = tempfile::Builder::new()
            .prefix(&dir_prefix("wrapper"))
            .tempdir()
            .map_err(|e| BrowserError::Launch(format!("temp dir: {e}")))?;
        let wrapper = wrapper_dir.path().join("chromium");
        write_wrapper(&wrapper, &config.chromium)?;
        let slots = (0..config.max_browsers)
            .map(|_| Slot { pages: Arc::new(Semaphore::new(config.pages_per_browser)), instance: Mutex::new(None) })
            .collect();
        Ok(BrowserPool {
            total: Arc::new(Semaphore::new(config.max_browsers * config.pages_per_browser)),
            config,
            args,
            wrapper_dir,
            wrapper,
            slots,
            closed: AtomicBool::new(false),
        })
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The Chromium command line this pool uses (without the per-browser profile directory).
    pub fn chromium_args(&self) -> Vec<String> {
        self.args
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("--{k}={v}"),
                None => format!("--{k}"),
            })
            .collect()
    }

    /// Launches the first browser now; returns how long the launch took.
    pub async fn warm_up(&self) -> Result<Duration, BrowserError> {
        let start = Instant::now();
        let slot = self.slots.first().ok_or(BrowserError::Closed)?;
        self.instance_for(slot, Instant::now() + self.config.launch_timeout).await?;
        Ok(start.elapsed())
    }

    /// PIDs of the Chromium main processes currently running for this pool.
    pub async fn browser_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for slot in &self.slots {
            if let Some(inst) = slot.instance.lock().await.as_ref() {
                if !inst.is_dead() {
                    pids.push(inst.pid);
                }
            }
        }
        pids
    }

    /// How many task browser contexts are open across the pool's browsers
    /// (diagnostics: 0 when no task runs).
    pub async fn open_contexts(&self) -> Result<usize, BrowserError> {
        use chromiumoxide::cdp::browser_protocol::target::GetBrowserContextsParams;
        let mut n = 0;
        for slot in &self.slots {
            let inst = slot.instance.lock().await.clone();
            if let Some(inst) = inst {
                if !inst.is_dead() {
                    let r = tokio::time::timeout(
                        self.config.health_timeout,
                        inst.browser.execute(GetBrowserContextsParams::default()),
                    )
                    .await
                    .map_err(|_| BrowserError::Deadline)??;
                    n += r.result.browser_context_ids.len();
                }
            }
        }
        Ok(n)
    }

    /// Runs one task with the pool's deadline: a fresh isolated browser
    /// context and page are made, `task` gets the page, and context and page
    /// are disposed afterwards whatever happened.
    pub async fn run<T, F, Fut>(&self, task: F) -> Result<T, BrowserError>
    where
        F: FnOnce(TaskPage) -> Fut,
        Fut: Future<Output = Result<T, BrowserError>>,
    {
        self.run_with_deadline(self.config.task_deadline, task).await
    }

    /// [`BrowserPool::run`] with another deadline.
    pub async fn run_with_deadline<T, F, Fut>(&self, deadline: Duration, task: F) -> Result<T, BrowserError>
    where
        F: FnOnce(TaskPage) -> Fut,
        Fut: Future<Output = Result<T, BrowserError>>,
    {
        if self.closed.load(Ordering::SeqCst) {
            return Err(BrowserError::Closed);
        }
        let until = tokio::time::Instant::now() + deadline;
        let until_std = Instant::now() + deadline;
        let (_total, _page, slot) = timeout_at(until, self.acquire()).await.map_err(|_| BrowserError::Deadline)??;
        let inst = self.instance_for(slot, until_std).await?;

        let setup = async {
            let ctx = inst.browser.create_browser_context(CreateBrowserContextParams::default()).await?;
            let params = CreateTargetParams::builder()
                .url("about:blank")
                .browser_context_id(ctx.clone())
                .build()
                .map_err(BrowserError::Cdp)?;
            match inst.browser.new_page(params).await {
                Ok(page) => Ok((ctx, page)),
                Err(e) => {
                    let _ = inst.browser.dispose_browser_context(ctx).await;
                    Err(BrowserError::from(e))
                }
            }
        };
        let (ctx, page) = match timeout_at(until, guard(&inst, setup)).await {
            Ok(r) => r?,
            Err(_) => return Err(if inst.is_dead() { BrowserError::Crashed } else { BrowserError::Deadline }),
        };
        // From here on the page and context are disposed of even if this future is dropped.
        let mut cleanup =
            TaskCleanup { inst: Some(inst.clone()), page: Some(page.clone()), ctx: Some(ctx), guard: None };

        match timeout_at(until, install_guard(&page, self.config.policy.clone())).await {
            Ok(Ok(h)) => cleanup.guard = Some(h),
            Ok(Err(e)) => {
                cleanup.run().await;
                return Err(e);
            }
            Err(_) => {
                cleanup.run().await;
                return Err(BrowserError::Deadline);
            }
        }

        let tp = TaskPage { page, policy: self.config.policy.clone(), until };
        let result = match timeout_at(until, guard(&inst, task(tp))).await {
            Ok(r) => r,
            Err(_) => Err(BrowserError::Deadline),
        };
        let result = match result {
            // An error while the browser is gone is the crash, whatever the call said.
            Err(e) if e != BrowserError::Crashed && inst.is_dead() => {
                tracing::debug!("task error {e} on a dead browser");
                Err(BrowserError::Crashed)
            }
            r => r,
        };
        cleanup.run().await;
        result
    }

    /// A global permit, then a page permit on the first browser slot with room
    /// (so browsers fill up before another one is launched).
    async fn acquire(&self) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit, &Slot), BrowserError> {
        let total = self.total.clone().acquire_owned().await.map_err(|_| BrowserError::Closed)?;
        for slot in &self.slots {
            if let Ok(p) = slot.pages.clone().try_acquire_owned() {
                return Ok((total, p, slot));
            }
        }
        // Unreachable while the global count equals the sum of the slots' counts.
        Err(BrowserError::Closed)
    }

    /// The slot's browser, launched or relaunched if it is missing, dead or hung.
    async fn instance_for(&self, slot: &Slot, until: Instant) -> Result<Arc<Instance>, BrowserError> {
        let until_tokio = tokio::time::Instant::from_std(until);
        let mut guard = timeout_at(until_tokio, slot.instance.lock()).await.map_err(|_| BrowserError::Deadline)?;
        if self.closed.load(Ordering::SeqCst) {
            return Err(BrowserError::Closed);
        }
        if let Some(inst) = guard.as_ref() {
            if !inst.is_dead() && self.healthy(inst).await {
                return Ok(inst.clone());
            }
            tracing::warn!(pid = inst.pid, "browser died or hangs; relaunching");
            if let Some(old) = guard.take() {
                old.kill();
            }
        }
        let left = until.saturating_duration_since(Instant::now());
        let inst = match tokio::time::timeout(left, self.launch()).await {
            Ok(r) => Arc::new(r?),
            Err(_) => return Err(BrowserError::Deadline),
        };
        *guard = Some(inst.clone());
        Ok(inst)
    }

    async fn healthy(&self, inst: &Instance) -> bool {
        matches!(
            tokio::time::timeout(self.config.health_timeout, inst.browser.execute(GetVersionParams::default())).await,
            Ok(Ok(_))
        )
    }

    async fn launch(&self) -> Result<Instance, BrowserError> {
        if !self.config.chromium.is_file() {
            return Err(BrowserError::ChromiumMissing(self.config.chromium.display().to_string()));
        }
        let profile = tempfile::Builder::new()
            .prefix(&dir_prefix("profile"))
            .tempdir()
            .map_err(|e| BrowserError::Launch(format!("profile dir: {e}")))?;
        write_profile_preferences(profile.path())?;
        let mut builder = BrowserConfig::builder()
            .chrome_executable(&self.wrapper)
            .user_data_dir(profile.path())
            .disable_default_args()
            .launch_timeout(self.config.launch_timeout)
            .request_timeout(self.config.task_deadline.max(Duration::from_secs(5)));
        if !self.config.sandbox {
            builder = builder.no_sandbox();
        }
        for (k, v) in &self.args {
            builder = match v {
                Some(v) => builder.arg((k.as_str(), v.as_str())),
                None => builder.arg(k.as_str()),
            };
        }
        let config = builder.build().map_err(BrowserError::Launch)?;
        let start = Instant::now();
        let (mut browser, mut handler) =
            Browser::launch(config).await.map_err(|e| BrowserError::Launch(e.to_string()))?;
        let Some(pid) = browser.get_mut_child().and_then(|c| c.as_mut_inner().id()) else {
            let _ = browser.kill().await;
            return Err(BrowserError::Launch("chromium exited right after start".into()));
        };
        let (dead_tx, dead_rx) = watch::channel(false);
        let handler = tokio::spawn(async move {
            while let Some(item) = handler.next().await {
                if let Err(e) = item {
                    use chromiumoxide::error::CdpError;
                    if matches!(e, CdpError::Ws(_) | CdpError::Io(_)) {
                        tracing::debug!("browser connection lost: {e}");
                        break;
                    }
                    tracing::debug!("browser handler: {e}");
                }
            }
            let _ = dead_tx.send(true);
        });
        tracing::info!(pid, elapsed_ms = start.elapsed().as_millis() as u64, "chromium launched");
        Ok(Instance { browser, pid, handler, dead: dead_rx, profile: Some(profile), launched_at: Instant::now() })
    }

    /// Closes every browser cleanly (`Browser.close`, then waits for the
    /// process), killing those that do not exit in time. Later tasks fail
    /// with [`BrowserError::Closed`].
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.total.close();
        for slot in &self.slots {
            let inst = slot.instance.lock().await.take();
            if let Some(inst) = inst {
                let tree = process_tree(inst.pid);
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), inst.browser.execute(CloseParams::default())).await;
                let until = Instant::now() + Duration::from_secs(3);
                while tree.iter().any(|p| process_alive(*p)) && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tracing::debug!(pid = inst.pid, up_s = inst.launched_at.elapsed().as_secs(), "browser closed");
                drop(inst);
            }
        }
    }
}

impl Drop for BrowserPool {
    fn drop(&mut self) {
        // Instances kill their processes when dropped; the wrapper directory goes with `wrapper_dir`.
        let _ = &self.wrapper_dir;
    }
}

/// Temp directories are named `captcha-browser-<owner pid>-<kind>-…`, so that
/// those of an owner that was killed (no destructor ran) can be recognised.
fn dir_prefix(kind: &str) -> String {
    format!("captcha-browser-{}-{kind}-", std::process::id())
}

/// Removes temp directories left by pool owners that no longer run (their
/// Chromium died with them through the wrapper's parent-death signal).
fn sweep_stale_dirs() {
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("captcha-browser-")) else { continue };
        let Some(owner) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if owner != std::process::id() && !process_alive(owner) {
            tracing::debug!(dir = %e.path().display(), "removing a dead owner's browser directory");
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn build_args(config: &PoolConfig) -> Result<Vec<(String, Option<String>)>, BrowserError> {
    let mut args: Vec<(String, Option<String>)> = [
        "headless",
        "disable-gpu",
        "disable-quic",
        "no-first-run",
        "disable-background-networking",
        "disable-component-update",
        "disable-sync",
        "disable-domain-reliability",
        "disable-breakpad",
        "disable-client-side-phishing-detection",
        "disable-component-extensions-with-background-pages",
        "disable-default-apps",
        "disable-extensions",
        "disable-dev-shm-usage",
        "disable-hang-monitor",
        "disable-popup-blocking",
        "disable-prompt-on-repost",
        "disable-background-timer-throttling",
        "disable-backgrounding-occluded-windows",
        "disable-renderer-backgrounding",
        "metrics-recording-only",
        "disable-field-trial-config",
        "no-service-autorun",
        "disable-search-engine-choice-screen",
        "no-default-browser-check",
        "no-pings",
        "mute-audio",
        "hide-scrollbars",
        "use-mock-keychain",
        // Honest: the browser says it is automated.
        "enable-automation",
    ]
    .iter()
    .map(|k| (k.to_string(), None))
    .collect();
    args.push(("password-store".into(), Some("basic".into())));
    // Services that call Google even with everything above switched off (seen in a
    // net log): the GAIA account check (`ListAccounts`) and on-demand component
    // updates. Point them at a closed local port so they never leave the machine.
    args.push(("gaia-url".into(), Some(DEAD_LOCAL_URL.into())));
    args.push(("google-apis-url".into(), Some(DEAD_LOCAL_URL.into())));
    args.push(("lso-url".into(), Some(DEAD_LOCAL_URL.into())));
    args.push(("component-updater".into(), Some(format!("url-source={DEAD_LOCAL_URL}"))));
    args.push(("disable-features".into(), Some(DISABLED_FEATURES.into())));
    if let Some(rules) = &config.host_resolver_rules {
        args.push(("host-resolver-rules".into(), Some(rules.clone())));
    }
    if let Some(proxy) = &config.proxy_server {
        args.push(("proxy-server".into(), Some(proxy.clone())));
    }
    if let Some(path) = &config.net_log {
        args.push(("log-net-log".into(), Some(path.display().to_string())));
    }
    Ok(args)
}

/// Preferences of the fresh profile that switch off services which call
/// Google or prefetch on their own (sign-in and its `ListAccounts` check,
/// network prediction, search suggestions, Safe Browsing lookups). Debian's
/// `master_preferences` would set some of these, but only on a first run,
/// which `--no-first-run` skips.
fn write_profile_preferences(profile: &Path) -> Result<(), BrowserError> {
    let prefs = serde_json::json!({
        "browser": { "has_seen_welcome_page": true, "check_default_browser": false },
        "signin": { "allowed": false, "allowed_on_next_startup": false },
        "net": { "network_prediction_options": 2 },
        "search": { "suggest_enabled": false },
        "safebrowsing": { "enabled": false },
        "homepage": "about:blank",
        "homepage_is_newtabpage": false,
        "session": { "restore_on_startup": 5 },
    });
    let dir = profile.join("Default");
    std::fs::create_dir_all(&dir).map_err(|e| BrowserError::Launch(format!("profile: {e}")))?;
    std::fs::write(dir.join("Preferences"), prefs.to_string())
        .map_err(|e| BrowserError::Launch(format!("profile: {e}")))
}

fn write_wrapper(path: &Path, chromium: &Path) -> Result<(), BrowserError> {
    use std::os::unix::fs::PermissionsExt;
    let chromium = chromium.display().to_string();
    if chromium.contains('\'') {
        return Err(BrowserError::Config("chromium path must not contain a quote".into()));
    }
    // `setpriv` (util-linux) is on Debian and in the install script; a
    // Lambda layer may lack it, and there the whole microVM goes with the
    // function, so plain `exec` is the fallback.
    let script = format!(
        "#!/bin/sh\n# Chromium dies with the process that started it.\n\
         if command -v setpriv >/dev/null 2>&1; then exec setpriv --pdeathsig KILL -- '{chromium}' \"$@\" about:blank; fi\n\
         exec '{chromium}' \"$@\" about:blank\n"
    );
    std::fs::write(path, script).map_err(|e| BrowserError::Launch(format!("wrapper: {e}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| BrowserError::Launch(format!("wrapper: {e}")))?;
    Ok(())
}

/// Runs `fut`, or fails with [`BrowserError::Crashed`] as soon as the browser's connection is lost.
async fn guard<T>(inst: &Instance, fut: impl Future<Output = Result<T, BrowserError>>) -> Result<T, BrowserError> {
    tokio::select! {
        r = fut => r,
        _ = inst.died() => Err(BrowserError::Crashed),
    }
}

/// Closes a task's page and disposes of its browser context: awaited at the
/// end of a task, or spawned if the task's future is dropped half-way.
struct TaskCleanup {
    inst: Option<Arc<Instance>>,
    page: Option<Page>,
    ctx: Option<chromiumoxide::cdp::browser_protocol::browser::BrowserContextId>,
    guard: Option<JoinHandle<()>>,
}

impl TaskCleanup {
    fn take(&mut self) -> impl Future<Output = ()> + Send + 'static {
        if let Some(g) = self.guard.take() {
            g.abort();
        }
        let (inst, page, ctx) = (self.inst.take(), self.page.take(), self.ctx.take());
        async move {
            let Some(inst) = inst else { return };
            if inst.is_dead() {
                return;
            }
            if let Some(page) = page {
                let _ = tokio::time::timeout(Duration::from_secs(2), page.close()).await;
            }
            if let Some(ctx) = ctx {
                let _ = tokio::time::timeout(Duration::from_secs(2), inst.browser.dispose_browser_context(ctx)).await;
            }
        }
    }

    async fn run(&mut self) {
        self.take().await;
    }
}

impl Drop for TaskCleanup {
    fn drop(&mut self) {
        if self.inst.is_some() {
            let fut = self.take();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(fut);
            }
        }
    }
}

/// Pauses every request the page makes (`Fetch` domain) and lets it go only
/// if the network policy allows its URL and the addresses its host resolves to.
async fn install_guard(page: &Page, policy: NetPolicy) -> Result<JoinHandle<()>, BrowserError> {
    let mut events = page.event_listener::<EventRequestPaused>().await?;
    page.execute(FetchEnableParams::default()).await?;
    let page = page.clone();
    Ok(tokio::spawn(async move {
        let mut verdicts: HashMap<String, bool> = HashMap::new();
        while let Some(ev) = events.next().await {
            let url = ev.request.url.clone();
            let key = match captcha_netguard::Url::parse(&url) {
                Ok(u) => format!(
                    "{}://{}:{}",
                    u.scheme(),
                    u.host_str().unwrap_or(""),
                    u.port_or_known_default().unwrap_or(0)
                ),
                Err(_) => url.clone(),
            };
            let allowed = match verdicts.get(&key) {
                Some(v) => *v,
                None => {
                    let v = policy.resolve(&url).await.is_ok();
                    verdicts.insert(key, v);
                    v
                }
            };
            let id = ev.request_id.clone();
            let r = if allowed {
                page.execute(ContinueRequestParams::new(id)).await.map(|_| ())
            } else {
                tracing::info!(url = %url, "request refused by the network policy");
                page.execute(FailRequestParams::new(id, ErrorReason::BlockedByClient)).await.map(|_| ())
            };
            // A request cancelled meanwhile (navigation, frame gone) fails here; carry on
            // with the others. The loop ends with the page's event stream.
            if let Err(e) = r {
                tracing::debug!(url = %url, "request verdict not applied: {e}");
            }
        }
    }))
}

/// The page a task works on, with its deadline and the network policy.
#[derive(Clone)]
pub struct TaskPage {
    page: Page,
    policy: NetPolicy,
    until: tokio::time::Instant,
}

impl TaskPage {
    /// The underlying chromiumoxide page.
    pub fn page(&self) -> &Page {
        &self.page
    }

    /// When this task's deadline passes.
    pub fn deadline(&self) -> tokio::time::Instant {
        self.until
    }

    /// Runs `fut` bounded by the task deadline.
    pub async fn bounded<T>(&self, fut: impl Future<Output = Result<T, BrowserError>>) -> Result<T, BrowserError> {
        timeout_at(self.until, fut).await.map_err(|_| BrowserError::Deadline)?
    }

    /// Registers a script that runs in every new document before the page's own scripts.
    pub async fn on_new_document(&self, source: &str) -> Result<(), BrowserError> {
        let params = AddScriptToEvaluateOnNewDocumentParams::new(source);
        self.bounded(async { Ok(self.page.execute(params).await.map(|_| ())?) }).await
    }

    /// Navigates to an `http(s)` URL the policy allows (checked and resolved first)
    /// and waits for the load.
    pub async fn goto(&self, url: &str) -> Result<(), BrowserError> {
        let (url, _) = self
            .bounded(async { self.policy.resolve(url).await.map_err(|e| BrowserError::Refused(format!("{url}: {e}"))) })
            .await?;
        match self.bounded(async { Ok(self.page.goto(url.as_str()).await.map(|_| ())?) }).await {
            // The request guard stopped the navigation (e.g. a redirect to a refused address).
            Err(BrowserError::Cdp(e)) if e.contains("ERR_BLOCKED_BY_CLIENT") => {
                Err(BrowserError::Refused(format!("{url}: {e}")))
            }
            r => r,
        }
    }

    /// Evaluates an expression and returns it as JSON (`null` for undefined).
    pub async fn eval(&self, expression: &str) -> Result<serde_json::Value, BrowserError> {
        self.bounded(async {
            let r = self.page.evaluate(expression).await?;
            Ok(r.value().cloned().unwrap_or(serde_json::Value::Null))
        })
        .await
    }

    /// [`TaskPage::eval`], but a protocol error (the page is navigating, the
    /// context was replaced, the expression threw) reads as `null` so that
    /// polling loops carry on; a crash or the deadline still end them.
    pub async fn eval_settled(&self, expression: &str) -> Result<serde_json::Value, BrowserError> {
        match self.eval(expression).await {
            Err(BrowserError::Cdp(e)) => {
                tracing::debug!("evaluate failed, retrying: {e}");
                Ok(serde_json::Value::Null)
            }
            r => r,
        }
    }

    /// A real mouse click (CDP `Input.dispatchMouseEvent` move, press, release) at a point.
    pub async fn click_at(&self, x: f64, y: f64) -> Result<(), BrowserError> {
        self.bounded(async { Ok(self.page.click(Point { x, y }).await.map(|_| ())?) }).await
    }

    /// Polls `expression` every `every` until it yields a non-empty string
    /// (returned) or the deadline passes ([`BrowserError::Deadline`]).
    pub async fn poll_string(&self, expression: &str, every: Duration) -> Result<String, BrowserError> {
        loop {
            match self.eval_settled(expression).await? {
                serde_json::Value::String(s) if !s.is_empty() => return Ok(s),
                _ => {}
            }
            if tokio::time::Instant::now() + every >= self.until {
                return Err(BrowserError::Deadline);
            }
            tokio::time::sleep(every).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    fn executable(path: &Path, body: &str) {
        std::fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// Runs the wrapper with `--flag "two words"` and only `path_dir` on PATH;
    /// the stand-in for Chromium prints the arguments it received, one per line.
    fn run_wrapper(dir: &Path, path_dir: &Path) -> Vec<String> {
        let chromium = dir.join("chromium");
        executable(&chromium, r#"for a in "$@"; do echo "chromium:$a"; done"#);
        let wrapper = dir.join("wrapper.sh");
        write_wrapper(&wrapper, &chromium).expect("wrapper");
        let out = Command::new("/bin/sh")
            .arg(&wrapper)
            .args(["--flag", "two words"])
            .env_clear()
            .env("PATH", path_dir)
            .output()
            .expect("run wrapper");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("captcha-browser-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).expect("temp dir");
        dir
    }

    #[test]
    fn wrapper_starts_chromium_under_setpriv_pdeathsig_when_present() {
        let dir = temp_dir("setpriv");
        // A setpriv that records how it was called, then does what setpriv does last: exec the rest.
        executable(&dir.join("bin/setpriv"), r#"echo "setpriv:$1 $2 $3"; shift 3; exec "$@""#);
        let lines = run_wrapper(&dir, &dir.join("bin"));
        assert_eq!(
            lines,
            ["setpriv:--pdeathsig KILL --", "chromium:--flag", "chromium:two words", "chromium:about:blank"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn wrapper_execs_chromium_directly_without_setpriv() {
        let dir = temp_dir("nosetpriv");
        let lines = run_wrapper(&dir, &dir.join("bin"));
        assert_eq!(lines, ["chromium:--flag", "chromium:two words", "chromium:about:blank"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn wrapper_refuses_a_chromium_path_with_a_quote() {
        let dir = temp_dir("quote");
        let err = write_wrapper(&dir.join("wrapper.sh"), Path::new("/opt/it's/chromium")).expect_err("quote");
        assert!(matches!(err, BrowserError::Config(_)), "{err:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
