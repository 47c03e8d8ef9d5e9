//! `captchad serve`: the HTTP API (classic and JSON), the router stage, one
//! OCR worker per core, the pingback stage and the sweeper, as tasks of one
//! process over one database file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_trait::async_trait;
use captcha_api::{ApiConfig, NetPolicy};
use captcha_browser::{BrowserPool, BrowserSolver, PoolConfig};
use captcha_callbacks::{Deliverer, PingbackConfig};
use captcha_core::{
    CaptchaService, Config, Core, ErrorCode, ImageSolver, PingbackOp, Pool, Report, SubmitRequest, TaskId, TaskResult,
    TokenSolver,
};
use captcha_netguard::GuardedClient;
use captcha_pow::{NativeSolver, SolveOptions};
use tokio::sync::{watch, Notify};

use crate::ocr_solver::OcrSolver;
use crate::store;

/// Everything `serve` needs, parsed from the command line.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub tls: Option<(PathBuf, PathBuf)>,
    /// OCR worker threads; 0 = one per core.
    pub ocr_workers: usize,
    /// A main OCR model directory instead of the embedded model.
    pub ocr_model: Option<PathBuf>,
    /// A glyph-cell model directory to attach instead of the embedded one
    /// (multicolor strips).
    pub ocr_cells: Option<PathBuf>,
    /// Balance of the account created on first start, in micro-units.
    pub first_account_micros: u64,
    pub config: Config,
    /// Which addresses page URLs and callbacks may reach (public only,
    /// plus `--allow-private-network` ranges).
    pub net_policy: NetPolicy,
    /// The browser pool's settings (`None`: no browser pool). Its policy is
    /// `net_policy`.
    pub browser: Option<PoolConfig>,
}

/// Wakes the stage loops as soon as there is work, so a task does not wait
/// for a polling interval between stages.
#[derive(Default)]
struct Wake {
    intake: Notify,
    ocr: Notify,
    native: Notify,
    browser: Notify,
}

/// The core as the HTTP layer sees it, plus a wake-up of the router on submit.
struct WakingService {
    core: Arc<Core>,
    wake: Arc<Wake>,
}

#[async_trait]
impl CaptchaService for WakingService {
    async fn submit(&self, req: SubmitRequest) -> Result<TaskId, ErrorCode> {
        let id = self.core.submit(req).await?;
        self.wake.intake.notify_one();
        Ok(id)
    }
    async fn result(&self, key: &str, id: TaskId) -> Result<TaskResult, ErrorCode> {
        self.core.result(key, id).await
    }
    async fn balance(&self, key: &str) -> Result<u64, ErrorCode> {
        self.core.balance(key).await
    }
    async fn report(&self, key: &str, id: TaskId, report: Report) -> Result<(), ErrorCode> {
        self.core.report(key, id, report).await
    }
    async fn pingbacks(&self, key: &str, op: PingbackOp) -> Result<Vec<String>, ErrorCode> {
        self.core.pingbacks(key, op).await
    }
}

/// Runs until `shutdown` resolves (or SIGINT/SIGTERM when `None`).
pub async fn run(opts: ServeOptions) -> Result<()> {
    let core = Arc::new(store::open_core_for_serving(&opts.data_dir, opts.config.clone()).await?);

    // A newcomer gets a key at once.
    let admin = core.admin();
    if admin.list().await.context("listing accounts")?.is_empty() {
        let created = admin.create(opts.first_account_micros).await.context("creating the first account")?;
        crate::emit(&format!(
            "Created the first account with balance {}.\nAPI key: {}\nCallback signing secret: {}\n",
            captcha_core::format_money(opts.first_account_micros),
            created.key,
            created.account.callback_secret
        ))?;
    }

    let solver: Arc<dyn ImageSolver> = Arc::new(
        OcrSolver::load_with(opts.ocr_model.as_deref(), opts.ocr_cells.as_deref()).context("loading the OCR model")?,
    );

    let wake = Arc::new(Wake::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut stages = Vec::new();
    stages.push(tokio::spawn(route_loop(core.clone(), wake.clone(), stop_rx.clone())));
    stages.push(tokio::spawn(sweep_loop(core.clone(), wake.clone(), stop_rx.clone())));
    let pingback_cfg = PingbackConfig { policy: opts.net_policy.clone(), ..Default::default() };
    let deliverer = Arc::new(Deliverer::new(core.clone(), pingback_cfg).context("building the callback client")?);
    stages.push(tokio::spawn(pingback_loop(deliverer, stop_rx.clone())));
    let workers = if opts.ocr_workers == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        opts.ocr_workers
    };
    if core.config().pools.contains(&Pool::Native) {
        let client = GuardedClient::new(opts.net_policy.clone(), Duration::from_secs(15), "captchad-native-pow")
            .context("building the native solver's client")?;
        // The proof must end well before the sweeper's solve timeout.
        let limit = core.config().solve_timeout.saturating_sub(Duration::from_secs(5)).max(Duration::from_secs(5));
        let solver = Arc::new(NativeSolver::new(client, SolveOptions { time_limit: limit, ..SolveOptions::default() }));
        let solver: Arc<dyn TokenSolver> = solver;
        stages.push(tokio::spawn(token_worker(core.clone(), wake.clone(), Pool::Native, solver, stop_rx.clone())));
    }
    let mut browser_pool = None;
    if let Some(cfg) = opts.browser.clone() {
        let slots = cfg.max_browsers * cfg.pages_per_browser;
        let pool = BrowserPool::new(PoolConfig { policy: opts.net_policy.clone(), ..cfg })
            .context("starting the browser pool")?;
        let solver = Arc::new(BrowserSolver::new(pool));
        browser_pool = Some(solver.clone());
        let solver: Arc<dyn TokenSolver> = solver;
        for _ in 0..slots.max(1) {
            stages.push(tokio::spawn(token_worker(
                core.clone(),
                wake.clone(),
                Pool::Browser,
                solver.clone(),
                stop_rx.clone(),
            )));
        }
    }
    let mut threads = Vec::new();
    for i in 0..workers {
        let (core, wake, solver, stop) = (core.clone(), wake.clone(), solver.clone(), stop_rx.clone());
        let handle = tokio::runtime::Handle::current();
        // The model is CPU-bound: each worker owns an OS thread, so the
        // HTTP runtime's threads never block on inference.
        threads.push(
            std::thread::Builder::new()
                .name(format!("ocr-{i}"))
                .spawn(move || handle.block_on(ocr_worker(core, wake, solver, stop)))?,
        );
    }

    let service: Arc<dyn CaptchaService> = Arc::new(WakingService { core: core.clone(), wake: wake.clone() });
    let app = captcha_api::router(service, ApiConfig::default().with_net_policy(opts.net_policy.clone()))
        .into_make_service_with_connect_info::<SocketAddr>();

    let shutdown = async {
        shutdown_signal().await;
        tracing::info!("shutting down");
    };
    match &opts.tls {
        None => {
            let listener =
                tokio::net::TcpListener::bind(opts.listen).await.with_context(|| format!("binding {}", opts.listen))?;
            crate::emit(&format!("Listening on http://{}\n", listener.local_addr()?))?;
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
        }
        Some((cert, key)) => {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .context("loading the TLS certificate and key")?;
            let std_listener =
                std::net::TcpListener::bind(opts.listen).with_context(|| format!("binding {}", opts.listen))?;
            std_listener.set_nonblocking(true)?;
            crate::emit(&format!("Listening on https://{}\n", std_listener.local_addr()?))?;
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                h.graceful_shutdown(Some(Duration::from_secs(5)));
            });
            axum_server::from_tcp_rustls(std_listener, tls)?.handle(handle).serve(app).await?;
        }
    }

    // Stop the stages; a solve in progress finishes and records its result.
    let _ = stop_tx.send(true);
    wake.intake.notify_waiters();
    wake.ocr.notify_waiters();
    wake.native.notify_waiters();
    wake.browser.notify_waiters();
    for s in stages {
        let _ = s.await;
    }
    if let Some(solver) = browser_pool {
        solver.pool().shutdown().await;
    }
    for t in threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// How long an idle stage sleeps when nothing wakes it: the safety net for
/// work that arrives without a wake-up (retries, another process, restarts).
const IDLE: Duration = Duration::from_millis(200);

async fn route_loop(core: Arc<Core>, wake: Arc<Wake>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let notified = wake.intake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match core.route_once().await {
            Ok(0) => {}
            Ok(_) => {
                wake.ocr.notify_waiters();
                wake.native.notify_waiters();
                wake.browser.notify_waiters();
                continue;
            }
            Err(e) => tracing::warn!(error = %e, "route step failed"),
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(IDLE) => {}
            _ = stop.changed() => {}
        }
    }
}

async fn ocr_worker(core: Arc<Core>, wake: Arc<Wake>, solver: Arc<dyn ImageSolver>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let notified = wake.ocr.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match core.solve_once(Pool::Ocr, solver.as_ref(), 1).await {
            Ok(0) => {}
            // A failed attempt goes back to the intake queue: wake the router.
            Ok(_) => {
                wake.intake.notify_one();
                continue;
            }
            Err(e) => tracing::warn!(error = %e, "solve step failed"),
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(IDLE) => {}
            _ = stop.changed() => {}
        }
    }
}

/// One token worker: the native pool runs one (a proof uses every core, on
/// blocking threads); the browser pool runs one per page slot.
async fn token_worker(
    core: Arc<Core>,
    wake: Arc<Wake>,
    pool: Pool,
    solver: Arc<dyn TokenSolver>,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let notify = if pool == Pool::Native { &wake.native } else { &wake.browser };
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match core.solve_tokens_once(pool, solver.as_ref(), 1).await {
            Ok(0) => {}
            Ok(_) => {
                wake.intake.notify_one();
                continue;
            }
            Err(e) => tracing::warn!(%pool, error = %e, "token solve step failed"),
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(IDLE) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Delivers callbacks; each round's attempts run concurrently, so a slow
/// receiver delays only its own callback.
async fn pingback_loop(deliverer: Arc<Deliverer>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        match deliverer.deliver_once().await {
            Ok(round) if round.handled() > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pingback step failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(IDLE) => {}
            _ = stop.changed() => {}
        }
    }
}

async fn sweep_loop(core: Arc<Core>, wake: Arc<Wake>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        match core.sweep_once().await {
            Ok(report) if !report.is_empty() => {
                tracing::info!(?report, "sweep");
                wake.intake.notify_one();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweep failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => {}
        }
    }
}
