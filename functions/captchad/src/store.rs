//! Opening the one database file every command of `captchad` works on.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use captcha_core::{ports::SystemClock, Config, Core, Ports};
use captcha_embedded::EmbeddedStore;

fn open_store(data_dir: &Path) -> Result<EmbeddedStore> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    EmbeddedStore::open(data_dir).with_context(|| format!("opening the store in {}", data_dir.display()))
}

fn core_over(store: EmbeddedStore, config: Config) -> Core {
    Core::new(config, Ports::from_store(Arc::new(store), Arc::new(SystemClock)))
}

/// The core over `<data_dir>/captchad.sqlite3`, creating the folder if
/// needed. For the account CLI, which may run beside a server.
pub fn open_core(data_dir: &Path, config: Config) -> Result<Core> {
    Ok(core_over(open_store(data_dir)?, config))
}

/// As [`open_core`], for the one serving process: work the previous process
/// had taken when it died is made visible again at once, and tasks it was
/// solving are retried, instead of waiting for their timeouts.
pub async fn open_core_for_serving(data_dir: &Path, config: Config) -> Result<Core> {
    let store = open_store(data_dir)?;
    let released = store.make_all_visible().await.context("releasing in-flight messages")?;
    let core = core_over(store, config);
    let recovered = core.recover_interrupted().await.context("recovering interrupted tasks")?;
    if released + recovered > 0 {
        tracing::info!(released, recovered, "resuming work interrupted by the previous run");
    }
    Ok(core)
}
