//! `captchad account create|topup|list|rotate-secret`: works on the same data dir while
//! `serve` runs (the store is a WAL database shared between processes).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use captcha_core::{format_money, parse_money, Config};

use crate::emit;
use crate::store::open_core;

fn money(s: &str) -> Result<u64> {
    parse_money(s).with_context(|| format!("{s:?} is not an amount like 10 or 10.50"))
}

/// Prints the new key alone on the first line of stdout.
pub async fn create(data_dir: &Path, balance: &str) -> Result<()> {
    let core = open_core(data_dir, Config::default())?;
    let created = core.admin().create(money(balance)?).await?;
    emit(&format!(
        "{}\naccount {} balance {}\ncallback signing secret {}\n",
        created.key,
        created.account.id,
        format_money(created.account.balance_micros),
        created.account.callback_secret
    ))
}

/// Prints the new secret alone on the first line of stdout.
pub async fn rotate_secret(data_dir: &Path, key: &str) -> Result<()> {
    let core = open_core(data_dir, Config::default())?;
    let account = core.admin().rotate_secret(key).await?;
    emit(&format!(
        "{}\naccount {} has a new callback signing secret; the old one no longer verifies\n",
        account.callback_secret, account.id
    ))
}

/// Adds `amount` to the account with this key (or account id).
pub async fn topup(data_dir: &Path, key: &str, amount: &str) -> Result<()> {
    let core = open_core(data_dir, Config::default())?;
    let amount = money(amount)?;
    if amount == 0 {
        bail!("the amount must be positive");
    }
    let account = core.admin().top_up(key, amount).await?;
    emit(&format!("account {} balance {}\n", account.id, format_money(account.balance_micros)))
}

pub async fn list(data_dir: &Path) -> Result<()> {
    let core = open_core(data_dir, Config::default())?;
    let mut text = format!("{:<20} {:>14} {:>14} {:>8}\n", "account", "balance", "held", "tasks");
    for a in core.admin().list().await? {
        let _ = writeln!(
            text,
            "{:<20} {:>14} {:>14} {:>8}",
            a.id.to_string(),
            format_money(a.balance_micros),
            format_money(a.held_micros),
            a.open_holds
        );
    }
    emit(&text)
}
