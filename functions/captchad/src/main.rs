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
    Serve(ServeArgs),
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
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
            serve::run(serve::ServeOptions {
                listen: a.listen,
                data_dir: cli.data_dir,
                tls: a.tls_cert.zip(a.tls_key),
                ocr_workers: a.ocr_workers,
                first_account_micros: money(&a.first_balance)?,
                config,
                net_policy: captcha_api::NetPolicy::allowing(a.allow_private_network),
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
