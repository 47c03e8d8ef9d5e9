//! Opening the one database file every command of `captchad` works on.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use captcha_core::{ports::SystemClock, Config, Core, Ports};
use captcha_embedded::EmbeddedStore;

/// The core over `<data_dir>/captchad.sqlite3`, creating the folder if needed.
pub fn open_core(data_dir: &Path, config: Config) -> Result<Core> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let store = EmbeddedStore::open(data_dir).with_context(|| format!("opening the store in {}", data_dir.display()))?;
    Ok(Core::new(config, Ports::from_store(Arc::new(store), Arc::new(SystemClock))))
}
