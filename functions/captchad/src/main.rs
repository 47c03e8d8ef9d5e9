//! `captchad`: command-line entry point (flags only; the work is in the library).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use captcha_core::{parse_money, Config, Method, Pool};
use captchad::{account, serve};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Self-hosted CAPTCHA-solving API (2Captcha-compatible), all in one process")]
struct Cli {
    /// Folder of the database file (created if missing).
    #[arg(long, global = true, env = "CAPTCHAD_DATA_DIR", default_value = "./captchad-data")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and run every stage.
    Serve(Box<ServeArgs>),
    /// Manage accounts (works while `serve` runs).
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long, env = "CAPTCHAD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// PEM certificate chain; with --tls-key serves https.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// OCR worker threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    ocr_workers: usize,
    /// Read images with this model directory (captcha.onnx + model.json)
    /// instead of the embedded one, e.g. shared/ocr/model-bilstm; it comes
    /// without a glyph-cell reader unless --ocr-cells names one.
    #[arg(long, env = "CAPTCHAD_OCR_MODEL", value_name = "DIR")]
    ocr_model: Option<PathBuf>,
    /// Read multicolor strips with the glyph-cell reader from this directory
    /// (cells.onnx + model.json) instead of the embedded one, e.g.
    /// shared/ocr/model-cells.
    #[arg(long, env = "CAPTCHAD_OCR_CELLS", value_name = "DIR")]
    ocr_cells: Option<PathBuf>,
    /// Balance of the account created on first start.
    #[arg(long, default_value = "10.00")]
    first_balance: String,
    /// Price of an image task.
    #[arg(long, default_value = "0.001")]
    price_image: String,
    /// Price of a token task (ALTCHA, Cap, …).
    #[arg(long, default_value = "0.003")]
    price_token: String,
    /// Do not run the native proof-of-work pool (ALTCHA/Cap without a browser).
    #[arg(long)]
    no_native_pow: bool,
    /// Chromium processes of the browser pool (0: no browser pool). The pool
    /// runs only if Chromium is installed (shared/browser/install-chromium.sh).
    #[arg(long, default_value_t = 1)]
    browsers: usize,
    /// Pages (concurrent tasks) per Chromium.
    #[arg(long, default_value_t = 4)]
    pages_per_browser: usize,
    /// The Chromium executable.
    #[arg(long, default_value = captcha_browser::DEFAULT_CHROMIUM)]
    chromium: PathBuf,
    /// Seconds one browser attempt may take.
    #[arg(long, default_value_t = 60)]
    browser_deadline_secs: u64,
    /// Chromium's --host-resolver-rules (e.g. confine it to the hosts you solve for).
    #[arg(long)]
    chromium_host_resolver_rules: Option<String>,
    /// Unfinished tasks one key may have (ERROR_NO_SLOT_AVAILABLE beyond).
    #[arg(long, default_value_t = 1000)]
    max_in_flight: u32,
    /// Submits per key per second (MAX_USER_TURN beyond).
    #[arg(long, default_value_t = 1000)]
    max_rps: u32,
    /// How long results stay readable, in seconds (at least 600 recommended).
    #[arg(long, default_value_t = 600)]
    retention_secs: u64,
    /// Solve attempts before a task ends ERROR_CAPTCHA_UNSOLVABLE.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// A hold left open by a crash between holding and storing a task is
    /// reconciled after this many seconds.
    #[arg(long, default_value_t = 300)]
    hold_repair_secs: u64,
    /// Let page URLs and callbacks reach this private/loopback range (e.g.
    /// 127.0.0.0/8); repeatable. By default only public addresses are reached.
    #[arg(long = "allow-private-network", value_name = "CIDR")]
    allow_private_network: Vec<captcha_netguard::Cidr>,
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account; prints its key alone on the first line.
    Create {
        #[arg(long, default_value = "0")]
        balance: String,
    },
    /// Add money to an account.
    Topup { key: String, amount: String },
    /// List accounts.
    List,
    /// Give an account a new callback signing secret (printed once).
    RotateSecret { key: String },
}

fn money(s: &str) -> Result<u64> {
    parse_money(s).with_context(|| format!("{s:?} is not an amount like 10 or 0.001"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    // ring is the one TLS provider (the HTTPS listener and the outbound clients).
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(a) => {
            let mut config = Config::default();
            config.prices.insert(Method::Image, money(&a.price_image)?);
            let token_price = money(&a.price_token)?;
            for m in Method::ALL.iter().filter(|m| m.is_token()) {
                config.prices.insert(*m, token_price);
            }
            if !a.no_native_pow {
                config.pools.insert(Pool::Native);
            }
            config.max_in_flight_per_key = a.max_in_flight;
            config.max_requests_per_sec = a.max_rps;
            config.request_burst = a.max_rps;
            config.result_retention = Duration::from_secs(a.retention_secs);
            config.max_attempts = a.max_attempts.max(1);
            config.hold_repair_after = Duration::from_secs(a.hold_repair_secs.max(1));
            let browser = if a.browsers == 0 {
                None
            } else if !a.chromium.exists() {
                tracing::warn!(chromium = %a.chromium.display(), "no Chromium: token widgets that need a browser are not offered (run shared/browser/install-chromium.sh)");
                None
            } else {
                let deadline = Duration::from_secs(a.browser_deadline_secs.max(5));
                config.pools.insert(Pool::Browser);
                // A browser attempt may run its whole deadline: the sweeper must not retry it meanwhile.
                config.solve_timeout = config.solve_timeout.max(deadline + Duration::from_secs(15));
                config.visibility_timeout = config.visibility_timeout.max(deadline + Duration::from_secs(15));
                Some(captcha_browser::PoolConfig {
                    chromium: a.chromium.clone(),
                    max_browsers: a.browsers,
                    pages_per_browser: a.pages_per_browser.max(1),
                    task_deadline: deadline,
                    host_resolver_rules: a.chromium_host_resolver_rules.clone(),
                    ..Default::default()
                })
            };
            serve::run(serve::ServeOptions {
                listen: a.listen,
                data_dir: cli.data_dir,
                tls: a.tls_cert.zip(a.tls_key),
                ocr_workers: a.ocr_workers,
                ocr_model: a.ocr_model,
                ocr_cells: a.ocr_cells,
                first_account_micros: money(&a.first_balance)?,
                config,
                net_policy: captcha_api::NetPolicy::allowing(a.allow_private_network),
                browser,
            })
            .await
        }
        Command::Account { command } => match command {
            AccountCommand::Create { balance } => account::create(&cli.data_dir, &balance).await,
            AccountCommand::Topup { key, amount } => account::topup(&cli.data_dir, &key, &amount).await,
            AccountCommand::List => account::list(&cli.data_dir).await,
            AccountCommand::RotateSecret { key } => account::rotate_secret(&cli.data_dir, &key).await,
        },
    }
}
