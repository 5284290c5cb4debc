//! The data directory and the store in it.

use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use vienna_store::{SqliteOptions, SqliteStore, Store, Synchronous};

use crate::config::{Config, StoreBackend, SyncMode};

/// Creates the data directory if needed and opens the configured store.
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    let dir = &config.server.data_dir;
    // Owner-only: the directory holds password digests and the TLS private key.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    match config.store.backend {
        StoreBackend::Sqlite => {
            let options = SqliteOptions {
                synchronous: match config.store.synchronous {
                    SyncMode::Full => Synchronous::Full,
                    SyncMode::Normal => Synchronous::Normal,
                },
                ..SqliteOptions::default()
            };
            let store = SqliteStore::open(&config.store_path(), &options).map_err(|e| anyhow!("{e}"))?;
            Ok(Arc::new(store))
        }
    }
}
