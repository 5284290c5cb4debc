//! The SQLite back end against the conformance suite, plus what only a file-backed store can show:
//! reopening, schema versions, and durability across kill -9.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use vienna_store::conformance::{self, add_user, aor};
use vienna_store::{SqliteOptions, SqliteStore, Store, StoreError};

#[test]
fn conformance_in_memory() {
    conformance::run_all(&|| Box::new(SqliteStore::open_in_memory().unwrap()));
}

#[test]
fn conformance_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::cell::Cell::new(0);
    conformance::run_all(&|| {
        counter.set(counter.get() + 1);
        let path = dir.path().join(format!("store-{}.db", counter.get()));
        Box::new(SqliteStore::open(&path, &SqliteOptions::default()).unwrap())
    });
}

#[test]
fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    {
        let store = SqliteStore::open(&path, &SqliteOptions::default()).unwrap();
        add_user(&store, "alice");
        store.add_group(&aor("alice"), "Friends").unwrap();
        store.flush().unwrap();
    }
    let store = SqliteStore::open(&path, &SqliteOptions::default()).unwrap();
    assert!(store.account(&aor("alice")).unwrap().is_some());
    assert_eq!(store.contact_list(&aor("alice")).unwrap().groups.len(), 1);
}

#[test]
fn refuses_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    drop(SqliteStore::open(&path, &SqliteOptions::default()).unwrap());
    set_user_version(&path, SqliteStore::schema_version() + 5);
    let err = SqliteStore::open(&path, &SqliteOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err}");
    assert!(err.to_string().contains("upgrade Vienna"));
}

/// Sets `PRAGMA user_version` of a closed database file. The store exposes no raw SQL, so this patches
/// the header: user_version is the big-endian u32 at offset 60 (SQLite file format §1.3). The store
/// checkpoints when it closes, so the main file is whole.
fn set_user_version(path: &Path, version: i64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[60..64].copy_from_slice(&(version as u32).to_be_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn opening_garbage_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-db");
    std::fs::write(&path, vec![0x42; 8192]).unwrap();
    let err = SqliteStore::open(&path, &SqliteOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("not-a-db") && !text.contains('\n'), "{text}");
}

const CHILD_ENV: &str = "VIENNA_STORE_CRASH_CHILD";

/// Writer half of `acknowledged_writes_survive_kill_9`: adds accounts forever, printing each name after
/// its commit returned.
#[test]
fn crash_child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let store = SqliteStore::open(Path::new(&path), &SqliteOptions::default()).unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        let name = format!("user{i}");
        add_user(&store, &name);
        store.add_group(&aor(&name), "Friends").unwrap();
        writeln!(out, "{name}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child_writer", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acknowledged = Vec::new();
    let reader = BufReader::new(child.stdout.take().unwrap());
    for line in reader.lines() {
        let line = line.unwrap();
        if line.starts_with("user") {
            acknowledged.push(line);
        }
        if acknowledged.len() == 200 {
            // SIGKILL: no destructor, no checkpoint, no flush.
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    assert_eq!(acknowledged.len(), 200, "writer stopped early");

    let store = SqliteStore::open(&path, &SqliteOptions::default()).unwrap();
    for name in &acknowledged {
        let owner = aor(name);
        assert!(store.account(&owner).unwrap().is_some(), "acknowledged account {name} lost");
        assert_eq!(store.contact_list(&owner).unwrap().groups.len(), 1, "acknowledged group of {name} lost");
    }
}
