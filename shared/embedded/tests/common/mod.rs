//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use captcha_core::ports::{Clock, ManualClock, Ports};
use captcha_embedded::{EmbeddedStore, Options};

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "captcha-embedded-{}-{}-{}",
            std::process::id(),
            nanos,
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> EmbeddedStore {
    EmbeddedStore::open_with(dir, Options { clock, ..Options::default() }).expect("open store")
}

pub fn ports(store: EmbeddedStore, clock: Arc<dyn Clock>) -> Ports {
    Ports::from_store(Arc::new(store), clock)
}

/// The suite's factory: a fresh database in a fresh temp dir.
pub fn make(clock: Arc<ManualClock>) -> (Ports, captcha_core::testkit::Guard) {
    let dir = TempDir::new();
    let store = open(dir.path(), clock.clone());
    (ports(store, clock), Box::new(dir))
}
