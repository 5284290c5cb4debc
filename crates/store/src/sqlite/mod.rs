//! The embedded SQLite back end: one file, WAL journal, foreign keys, synchronous commits.
//!
//! One connection behind a mutex serves the process; other processes (the `vienna user` commands while a
//! server runs) open their own and SQLite's file locks order the writers, with a busy timeout.

mod migrations;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use crate::{
    AccessLevel, Account, AccountUpdate, Ace, AceScope, Aor, Binding, BindingChange, ConferenceRecord, ContactEntry,
    ContactList, Group, ManualPresence, NewAccount, Result, Secrets, Store, StoreError, UnixTime, Watcher,
    WatcherState,
};
use migrations::MIGRATIONS;

/// How hard SQLite works to make a commit durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Sync the WAL at every commit: an acknowledged write survives a process crash and a power loss.
    #[default]
    Full,
    /// Sync only at checkpoints: survives a process crash (kill -9), may lose the last commits on power
    /// loss. Faster for registration-heavy loads.
    Normal,
}

/// Options of [`SqliteStore::open`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Durability of commits.
    pub synchronous: Synchronous,
    /// How long a writer waits for another process's lock before failing.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self { synchronous: Synchronous::Full, busy_timeout: Duration::from_secs(5) }
    }
}

/// The SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn is_foreign_key_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// Prepared statements kept per connection: more than the store has distinct statements, so none is
/// parsed twice.
const STATEMENT_CACHE: usize = 128;

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub fn open(path: &Path, options: &SqliteOptions) -> Result<Self> {
        let open_err = |e: rusqlite::Error| StoreError::Backend(format!("cannot open {}: {e}", path.display()));
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(options.busy_timeout).map_err(open_err)?;
        let journal: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(open_err)?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!("cannot use WAL journal on {} (got {journal})", path.display())));
        }
        let sync = match options.synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.execute_batch(&format!("PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;")).map_err(open_err)?;
        migrate(&mut conn)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Self { conn: Mutex::new(conn), path: path.to_owned() })
    }

    /// Opens a private in-memory store (for tests and tools).
    pub fn open_in_memory() -> Result<Self> {
        let mut conn = Connection::open_in_memory().map_err(backend)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;").map_err(backend)?;
        migrate(&mut conn)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Self { conn: Mutex::new(conn), path: PathBuf::from(":memory:") })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version this build writes.
    pub fn schema_version() -> i64 {
        MIGRATIONS.len() as i64
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (the transaction rolls back on
        // drop), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        let out = f(&tx)?;
        tx.commit().map_err(backend)?;
        Ok(out)
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let found: i64 = one(conn, "PRAGMA user_version", [], |r| r.get(0)).map_err(backend)?;
    let supported = MIGRATIONS.len() as i64;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction().map_err(backend)?;
        tx.execute_batch(sql).map_err(|e| StoreError::Backend(format!("migration {}: {e}", i + 1)))?;
        tx.pragma_update(None, "user_version", i as i64 + 1).map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    Ok(())
}

/// Runs a query (its statement cached on the connection) and collects every row through `map`.
fn rows<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
    stmt.query_map(params, map).map_err(backend)?.collect::<rusqlite::Result<_>>().map_err(backend)
}

/// Runs a statement (cached on the connection, so it is parsed once) and returns the rows it changed.
fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// Runs a query (its statement cached on the connection) and maps its one row.
fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, map)
}

const ACCOUNT_COLUMNS: &str = "uri, display_name, enabled, realm, created_at, updated_at";
const SECRET_COLUMNS: &str = "realm, auth_username, ha1_md5, ha1_sha256, nt_hash";

fn account_from_row(r: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        uri: r.get(0)?,
        display_name: r.get(1)?,
        enabled: r.get(2)?,
        realm: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

/// Reads secrets from columns starting at `at`, in [`SECRET_COLUMNS`] order.
fn secrets_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<Secrets> {
    Ok(Secrets {
        realm: r.get(at)?,
        auth_username: r.get(at + 1)?,
        ha1_md5: r.get(at + 2)?,
        ha1_sha256: r.get(at + 3)?,
        nt_hash: r.get(at + 4)?,
    })
}

fn account_with_secrets(r: &Row<'_>) -> rusqlite::Result<(Account, Secrets)> {
    Ok((account_from_row(r)?, secrets_from_row(r, 6)?))
}

const BINDING_COLUMNS: &str =
    "aor, contact, instance_id, reg_id, call_id, cseq, expires_at, q, received, path, user_agent, updated_at";

fn binding_from_row(r: &Row<'_>) -> rusqlite::Result<Binding> {
    let path: String = r.get(9)?;
    Ok(Binding {
        aor: r.get(0)?,
        contact: r.get(1)?,
        instance_id: r.get(2)?,
        reg_id: r.get(3)?,
        call_id: r.get(4)?,
        cseq: r.get(5)?,
        expires_at: r.get(6)?,
        q: r.get(7)?,
        received: r.get(8)?,
        path: serde_json::from_str(&path)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(9, rusqlite::types::Type::Text, Box::new(e)))?,
        user_agent: r.get(10)?,
        updated_at: r.get(11)?,
    })
}

fn conference_from_row(r: &Row<'_>) -> rusqlite::Result<ConferenceRecord> {
    Ok(ConferenceRecord {
        id: r.get(0)?,
        organizer: r.get(1)?,
        subject: r.get(2)?,
        locked: r.get(3)?,
        max_participants: r.get(4)?,
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
    })
}

const CONFERENCE_COLUMNS: &str = "id, organizer, subject, locked, max_participants, created_at, expires_at";

fn scope_columns(scope: &AceScope) -> (&'static str, &str) {
    match scope {
        AceScope::User(u) => ("user", u),
        AceScope::Domain(d) => ("domain", d),
        AceScope::Everyone => ("everyone", ""),
    }
}

fn level_name(level: AccessLevel) -> &'static str {
    match level {
        AccessLevel::Allow => "allow",
        AccessLevel::Block => "block",
    }
}

fn watcher_state_name(state: WatcherState) -> &'static str {
    match state {
        WatcherState::Pending => "pending",
        WatcherState::Allowed => "allowed",
        WatcherState::Blocked => "blocked",
    }
}

fn corrupt(column: usize, value: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        format!("unexpected value {value:?}").into(),
    )
}

/// Checks the owner exists and raises its list version; returns the new version.
fn bump_list_version(tx: &Transaction<'_>, owner: &Aor) -> Result<u64> {
    let version: Option<i64> = one(
        tx,
        "UPDATE accounts SET list_version = list_version + 1 WHERE uri = ?1 RETURNING list_version",
        [owner.as_str()],
        |r| r.get(0),
    )
    .optional()
    .map_err(backend)?;
    version.map(|v| v as u64).ok_or_else(|| StoreError::not_found("account", owner.as_str()))
}

fn require_owner(tx: &Transaction<'_>, owner: &Aor) -> Result<()> {
    let exists: bool = one(tx, "SELECT EXISTS (SELECT 1 FROM accounts WHERE uri = ?1)", [owner.as_str()], |r| r.get(0))
        .map_err(backend)?;
    if exists { Ok(()) } else { Err(StoreError::not_found("account", owner.as_str())) }
}

fn check_text(what: &'static str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(StoreError::invalid(what, format!("longer than {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(StoreError::invalid(what, "control characters are not allowed"));
    }
    Ok(())
}

/// Longest display name, group name or subject accepted.
const MAX_NAME: usize = 256;
/// Longest presence note accepted.
const MAX_NOTE: usize = 1024;
/// Longest URI accepted in lists and bindings.
const MAX_URI: usize = 1024;

impl Store for SqliteStore {
    fn ping(&self) -> Result<()> {
        self.conn().query_row("SELECT 1", [], |_| Ok(())).map_err(backend)
    }

    fn flush(&self) -> Result<()> {
        self.conn().query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(backend)
    }

    fn add_account(&self, a: &NewAccount, now: UnixTime) -> Result<Account> {
        check_text("display name", &a.display_name, MAX_NAME)?;
        self.write(|tx| {
            let s = &a.secrets;
            exec(
                tx,
                "INSERT INTO accounts (uri, display_name, enabled, realm, auth_username, ha1_md5, ha1_sha256,
                 nt_hash, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                params![
                    a.aor.as_str(),
                    a.display_name,
                    a.enabled,
                    s.realm,
                    s.auth_username,
                    s.ha1_md5,
                    s.ha1_sha256,
                    s.nt_hash,
                    now
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists { kind: "account", key: a.aor.to_string() }
                } else {
                    backend(e)
                }
            })?;
            Ok(Account {
                uri: a.aor.to_string(),
                display_name: a.display_name.clone(),
                enabled: a.enabled,
                realm: s.realm.clone(),
                created_at: now,
                updated_at: now,
            })
        })
    }

    fn account(&self, aor: &Aor) -> Result<Option<Account>> {
        self.conn()
            .query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE uri = ?1"),
                [aor.as_str()],
                account_from_row,
            )
            .optional()
            .map_err(backend)
    }

    fn account_secrets(&self, aor: &Aor) -> Result<Option<(Account, Secrets)>> {
        self.conn()
            .query_row(
                &format!("SELECT {ACCOUNT_COLUMNS}, {SECRET_COLUMNS} FROM accounts WHERE uri = ?1"),
                [aor.as_str()],
                account_with_secrets,
            )
            .optional()
            .map_err(backend)
    }

    fn account_by_auth_username(&self, username: &str, realm: &str) -> Result<Option<(Account, Secrets)>> {
        let conn = self.conn();
        let mut found: Vec<_> = rows(
            &conn,
            &format!(
                "SELECT {ACCOUNT_COLUMNS}, {SECRET_COLUMNS} FROM accounts
                 WHERE auth_username = ?1 AND realm = ?2 ORDER BY uri LIMIT 2"
            ),
            [username, realm],
            account_with_secrets,
        )?;
        // Two accounts of different domains may share a user name in one realm; refuse to guess.
        Ok(if found.len() == 1 { found.pop() } else { None })
    }

    fn list_accounts(&self) -> Result<Vec<Account>> {
        let conn = self.conn();
        rows(&conn, &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY uri"), [], account_from_row)
    }

    fn update_account(&self, aor: &Aor, u: &AccountUpdate, now: UnixTime) -> Result<Account> {
        if let Some(name) = &u.display_name {
            check_text("display name", name, MAX_NAME)?;
        }
        self.write(|tx| {
            let changed = exec(
                tx,
                "UPDATE accounts SET display_name = COALESCE(?2, display_name),
                     enabled = COALESCE(?3, enabled), updated_at = ?4 WHERE uri = ?1",
                params![aor.as_str(), u.display_name, u.enabled, now],
            )
            .map_err(backend)?;
            if changed == 0 {
                return Err(StoreError::not_found("account", aor.as_str()));
            }
            if let Some(s) = &u.secrets {
                exec(
                    tx,
                    "UPDATE accounts SET realm = ?2, auth_username = ?3, ha1_md5 = ?4, ha1_sha256 = ?5,
                     nt_hash = ?6 WHERE uri = ?1",
                    params![aor.as_str(), s.realm, s.auth_username, s.ha1_md5, s.ha1_sha256, s.nt_hash],
                )
                .map_err(backend)?;
            }
            one(tx, &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE uri = ?1"), [aor.as_str()], account_from_row)
                .map_err(backend)
        })
    }

    fn remove_account(&self, aor: &Aor) -> Result<()> {
        self.write(|tx| {
            let n = exec(tx, "DELETE FROM accounts WHERE uri = ?1", [aor.as_str()]).map_err(backend)?;
            if n == 0 { Err(StoreError::not_found("account", aor.as_str())) } else { Ok(()) }
        })
    }

    fn put_binding(&self, b: &Binding) -> Result<()> {
        let path = check_binding(b)?;
        self.write(|tx| insert_binding(tx, b, &path))
    }

    fn apply_bindings(&self, changes: &[BindingChange]) -> Result<()> {
        let paths = changes
            .iter()
            .map(|c| match c {
                BindingChange::Put(b) => check_binding(b).map(Some),
                BindingChange::Remove { .. } => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        self.write(|tx| {
            for (change, path) in changes.iter().zip(&paths) {
                match (change, path) {
                    (BindingChange::Put(b), Some(path)) => insert_binding(tx, b, path)?,
                    (BindingChange::Remove { aor, contact }, _) => {
                        exec(tx, "DELETE FROM bindings WHERE aor = ?1 AND contact = ?2", [aor, contact])
                            .map_err(backend)?;
                    }
                    (BindingChange::Put(_), None) => unreachable!("checked above"),
                }
            }
            Ok(())
        })
    }

    fn remove_binding(&self, aor: &Aor, contact: &str) -> Result<bool> {
        self.write(|tx| {
            exec(tx, "DELETE FROM bindings WHERE aor = ?1 AND contact = ?2", [aor.as_str(), contact])
                .map(|n| n > 0)
                .map_err(backend)
        })
    }

    fn remove_bindings(&self, aor: &Aor) -> Result<usize> {
        self.write(|tx| exec(tx, "DELETE FROM bindings WHERE aor = ?1", [aor.as_str()]).map_err(backend))
    }

    fn bindings(&self, aor: &Aor, now: UnixTime) -> Result<Vec<Binding>> {
        let conn = self.conn();
        rows(
            &conn,
            &format!("SELECT {BINDING_COLUMNS} FROM bindings WHERE aor = ?1 AND expires_at > ?2 ORDER BY contact"),
            params![aor.as_str(), now],
            binding_from_row,
        )
    }

    fn all_bindings(&self, now: UnixTime) -> Result<Vec<Binding>> {
        let conn = self.conn();
        rows(
            &conn,
            &format!("SELECT {BINDING_COLUMNS} FROM bindings WHERE expires_at > ?1 ORDER BY aor, contact"),
            [now],
            binding_from_row,
        )
    }

    fn remove_expired_bindings(&self, now: UnixTime) -> Result<usize> {
        self.write(|tx| exec(tx, "DELETE FROM bindings WHERE expires_at <= ?1", [now]).map_err(backend))
    }

    fn contact_list(&self, owner: &Aor) -> Result<ContactList> {
        let conn = self.conn();
        let version: i64 =
            one(&conn, "SELECT list_version FROM accounts WHERE uri = ?1", [owner.as_str()], |r| r.get(0))
                .optional()
                .map_err(backend)?
                .ok_or_else(|| StoreError::not_found("account", owner.as_str()))?;
        let groups =
            rows(&conn, "SELECT id, name FROM contact_groups WHERE owner = ?1 ORDER BY id", [owner.as_str()], |r| {
                Ok(Group { id: r.get(0)?, name: r.get(1)? })
            })?;
        let contacts = rows(
            &conn,
            "SELECT c.uri, c.display_name, c.subscribed, group_concat(m.group_id)
                 FROM contacts c LEFT JOIN contact_group_members m ON m.owner = c.owner AND m.uri = c.uri
                 WHERE c.owner = ?1 GROUP BY c.uri ORDER BY c.uri",
            [owner.as_str()],
            |r| {
                let ids: Option<String> = r.get(3)?;
                let mut groups = Vec::new();
                for id in ids.as_deref().unwrap_or("").split(',').filter(|s| !s.is_empty()) {
                    groups.push(id.parse::<u32>().map_err(|_| corrupt(3, id.to_owned()))?);
                }
                groups.sort_unstable();
                Ok(ContactEntry { uri: r.get(0)?, display_name: r.get(1)?, groups, subscribed: r.get(2)? })
            },
        )?;
        Ok(ContactList { version: version as u64, groups, contacts })
    }

    fn add_group(&self, owner: &Aor, name: &str) -> Result<(Group, u64)> {
        check_group_name(name)?;
        self.write(|tx| {
            let version = bump_list_version(tx, owner)?;
            let id: u32 = one(
                tx,
                "SELECT COALESCE(MAX(id), 0) + 1 FROM contact_groups WHERE owner = ?1",
                [owner.as_str()],
                |r| r.get(0),
            )
            .map_err(backend)?;
            exec(
                tx,
                "INSERT INTO contact_groups (owner, id, name) VALUES (?1, ?2, ?3)",
                params![owner.as_str(), id, name],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists { kind: "group", key: name.to_owned() }
                } else {
                    backend(e)
                }
            })?;
            Ok((Group { id, name: name.to_owned() }, version))
        })
    }

    fn rename_group(&self, owner: &Aor, id: u32, name: &str) -> Result<u64> {
        check_group_name(name)?;
        self.write(|tx| {
            let version = bump_list_version(tx, owner)?;
            let n = exec(
                tx,
                "UPDATE contact_groups SET name = ?3 WHERE owner = ?1 AND id = ?2",
                params![owner.as_str(), id, name],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists { kind: "group", key: name.to_owned() }
                } else {
                    backend(e)
                }
            })?;
            if n == 0 { Err(StoreError::not_found("group", id.to_string())) } else { Ok(version) }
        })
    }

    fn remove_group(&self, owner: &Aor, id: u32) -> Result<u64> {
        self.write(|tx| {
            let version = bump_list_version(tx, owner)?;
            let n = exec(tx, "DELETE FROM contact_groups WHERE owner = ?1 AND id = ?2", params![owner.as_str(), id])
                .map_err(backend)?;
            if n == 0 { Err(StoreError::not_found("group", id.to_string())) } else { Ok(version) }
        })
    }

    fn put_contact(&self, owner: &Aor, c: &ContactEntry) -> Result<u64> {
        check_text("contact URI", &c.uri, MAX_URI)?;
        check_text("display name", &c.display_name, MAX_NAME)?;
        if c.uri.is_empty() {
            return Err(StoreError::invalid("contact URI", "empty"));
        }
        self.write(|tx| {
            let version = bump_list_version(tx, owner)?;
            exec(
                tx,
                "INSERT INTO contacts (owner, uri, display_name, subscribed) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (owner, uri) DO UPDATE SET display_name = ?3, subscribed = ?4",
                params![owner.as_str(), c.uri, c.display_name, c.subscribed],
            )
            .map_err(backend)?;
            exec(tx, "DELETE FROM contact_group_members WHERE owner = ?1 AND uri = ?2", params![owner.as_str(), c.uri])
                .map_err(backend)?;
            for group in &c.groups {
                let exists: bool = one(
                    tx,
                    "SELECT EXISTS (SELECT 1 FROM contact_groups WHERE owner = ?1 AND id = ?2)",
                    params![owner.as_str(), group],
                    |r| r.get(0),
                )
                .map_err(backend)?;
                if !exists {
                    return Err(StoreError::not_found("group", group.to_string()));
                }
                exec(
                    tx,
                    "INSERT OR IGNORE INTO contact_group_members (owner, uri, group_id) VALUES (?1, ?2, ?3)",
                    params![owner.as_str(), c.uri, group],
                )
                .map_err(backend)?;
            }
            Ok(version)
        })
    }

    fn remove_contact(&self, owner: &Aor, uri: &str) -> Result<u64> {
        self.write(|tx| {
            let version = bump_list_version(tx, owner)?;
            let n = exec(tx, "DELETE FROM contacts WHERE owner = ?1 AND uri = ?2", [owner.as_str(), uri])
                .map_err(backend)?;
            if n == 0 { Err(StoreError::not_found("contact", uri)) } else { Ok(version) }
        })
    }

    fn aces(&self, owner: &Aor) -> Result<Vec<Ace>> {
        let conn = self.conn();
        rows(
            &conn,
            "SELECT scope_kind, scope_value, level FROM aces WHERE owner = ?1
                 ORDER BY scope_kind, scope_value",
            [owner.as_str()],
            |r| {
                let kind: String = r.get(0)?;
                let value: String = r.get(1)?;
                let level: String = r.get(2)?;
                let scope = match kind.as_str() {
                    "user" => AceScope::User(value),
                    "domain" => AceScope::Domain(value),
                    "everyone" => AceScope::Everyone,
                    _ => return Err(corrupt(0, kind)),
                };
                let level = match level.as_str() {
                    "allow" => AccessLevel::Allow,
                    "block" => AccessLevel::Block,
                    _ => return Err(corrupt(2, level)),
                };
                Ok(Ace { scope, level })
            },
        )
    }

    fn put_ace(&self, owner: &Aor, ace: &Ace) -> Result<u64> {
        let (kind, value) = scope_columns(&ace.scope);
        check_text("ACL scope", value, MAX_URI)?;
        if kind != "everyone" && value.is_empty() {
            return Err(StoreError::invalid("ACL scope", "empty"));
        }
        self.write(|tx| {
            let version = bump_list_version(tx, owner)?;
            exec(
                tx,
                "INSERT OR REPLACE INTO aces (owner, scope_kind, scope_value, level) VALUES (?1, ?2, ?3, ?4)",
                params![owner.as_str(), kind, value, level_name(ace.level)],
            )
            .map_err(backend)?;
            Ok(version)
        })
    }

    fn remove_ace(&self, owner: &Aor, scope: &AceScope) -> Result<u64> {
        let (kind, value) = scope_columns(scope);
        self.write(|tx| {
            let version = bump_list_version(tx, owner)?;
            let n = exec(
                tx,
                "DELETE FROM aces WHERE owner = ?1 AND scope_kind = ?2 AND scope_value = ?3",
                params![owner.as_str(), kind, value],
            )
            .map_err(backend)?;
            if n == 0 { Err(StoreError::not_found("ACL entry", format!("{kind}:{value}"))) } else { Ok(version) }
        })
    }

    fn watchers(&self, owner: &Aor) -> Result<Vec<Watcher>> {
        let conn = self.conn();
        rows(
            &conn,
            "SELECT uri, display_name, state, first_seen, updated_at FROM watchers WHERE owner = ?1
                 ORDER BY uri",
            [owner.as_str()],
            |r| {
                let state: String = r.get(2)?;
                let state = match state.as_str() {
                    "pending" => WatcherState::Pending,
                    "allowed" => WatcherState::Allowed,
                    "blocked" => WatcherState::Blocked,
                    _ => return Err(corrupt(2, state)),
                };
                Ok(Watcher {
                    uri: r.get(0)?,
                    display_name: r.get(1)?,
                    state,
                    first_seen: r.get(3)?,
                    updated_at: r.get(4)?,
                })
            },
        )
    }

    fn put_watcher(&self, owner: &Aor, w: &Watcher) -> Result<()> {
        check_text("watcher URI", &w.uri, MAX_URI)?;
        if let Some(name) = &w.display_name {
            check_text("display name", name, MAX_NAME)?;
        }
        self.write(|tx| {
            require_owner(tx, owner)?;
            exec(
                tx,
                "INSERT OR REPLACE INTO watchers (owner, uri, display_name, state, first_seen, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![owner.as_str(), w.uri, w.display_name, watcher_state_name(w.state), w.first_seen, w.updated_at],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn remove_watcher(&self, owner: &Aor, uri: &str) -> Result<bool> {
        self.write(|tx| {
            exec(tx, "DELETE FROM watchers WHERE owner = ?1 AND uri = ?2", [owner.as_str(), uri])
                .map(|n| n > 0)
                .map_err(backend)
        })
    }

    fn manual_presence(&self, owner: &Aor) -> Result<Option<ManualPresence>> {
        self.conn()
            .query_row(
                "SELECT availability, activity, note, updated_at FROM manual_presence WHERE owner = ?1",
                [owner.as_str()],
                |r| {
                    Ok(ManualPresence {
                        availability: r.get(0)?,
                        activity: r.get(1)?,
                        note: r.get(2)?,
                        updated_at: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(backend)
    }

    fn set_manual_presence(&self, owner: &Aor, state: Option<&ManualPresence>) -> Result<()> {
        if let Some(s) = state {
            if s.availability > 100_000 {
                return Err(StoreError::invalid("availability", "must be 0..=100000"));
            }
            check_text("activity", s.activity.as_deref().unwrap_or(""), MAX_NAME)?;
            check_text("note", s.note.as_deref().unwrap_or(""), MAX_NOTE)?;
        }
        self.write(|tx| {
            require_owner(tx, owner)?;
            match state {
                Some(s) => tx.execute(
                    "INSERT OR REPLACE INTO manual_presence (owner, availability, activity, note, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![owner.as_str(), s.availability, s.activity, s.note, s.updated_at],
                ),
                None => tx.execute("DELETE FROM manual_presence WHERE owner = ?1", [owner.as_str()]),
            }
            .map_err(backend)?;
            Ok(())
        })
    }

    fn add_conference(&self, c: &ConferenceRecord) -> Result<()> {
        check_conference(c)?;
        let organizer = Aor::parse(&c.organizer, None)?;
        self.write(|tx| {
            require_owner(tx, &organizer)?;
            exec(
                tx,
                &format!("INSERT INTO conferences ({CONFERENCE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![c.id, organizer.as_str(), c.subject, c.locked, c.max_participants, c.created_at, c.expires_at],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists { kind: "conference", key: c.id.clone() }
                } else {
                    backend(e)
                }
            })?;
            Ok(())
        })
    }

    fn conference(&self, id: &str) -> Result<Option<ConferenceRecord>> {
        self.conn()
            .query_row(
                &format!("SELECT {CONFERENCE_COLUMNS} FROM conferences WHERE id = ?1"),
                [id],
                conference_from_row,
            )
            .optional()
            .map_err(backend)
    }

    fn list_conferences(&self) -> Result<Vec<ConferenceRecord>> {
        let conn = self.conn();
        rows(&conn, &format!("SELECT {CONFERENCE_COLUMNS} FROM conferences ORDER BY id"), [], conference_from_row)
    }

    fn update_conference(&self, c: &ConferenceRecord) -> Result<()> {
        check_conference(c)?;
        let organizer = Aor::parse(&c.organizer, None)?;
        self.write(|tx| {
            require_owner(tx, &organizer)?;
            let n = exec(
                tx,
                "UPDATE conferences SET organizer = ?2, subject = ?3, locked = ?4, max_participants = ?5,
                     created_at = ?6, expires_at = ?7 WHERE id = ?1",
                params![c.id, organizer.as_str(), c.subject, c.locked, c.max_participants, c.created_at, c.expires_at],
            )
            .map_err(backend)?;
            if n == 0 { Err(StoreError::not_found("conference", c.id.as_str())) } else { Ok(()) }
        })
    }

    fn remove_conference(&self, id: &str) -> Result<bool> {
        self.write(|tx| exec(tx, "DELETE FROM conferences WHERE id = ?1", [id]).map(|n| n > 0).map_err(backend))
    }
}

fn check_group_name(name: &str) -> Result<()> {
    check_text("group name", name, MAX_NAME)?;
    if name.trim().is_empty() {
        return Err(StoreError::invalid("group name", "empty"));
    }
    Ok(())
}

fn check_conference(c: &ConferenceRecord) -> Result<()> {
    if c.id.is_empty() || c.id.len() > 128 || !c.id.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
        return Err(StoreError::invalid("conference id", "1 to 128 of A-Z a-z 0-9 - _ ."));
    }
    check_text("subject", &c.subject, MAX_NAME)
}

/// Validates a binding before it is written; returns its Path list as JSON.
fn check_binding(b: &Binding) -> Result<String> {
    check_text("contact", &b.contact, MAX_URI)?;
    if b.q.is_some_and(|q| q > 1000) {
        return Err(StoreError::invalid("q", "must be 0..=1000 thousandths"));
    }
    Aor::parse(&b.aor, None)?;
    serde_json::to_string(&b.path).map_err(|e| StoreError::Backend(e.to_string()))
}

/// Creates one binding or updates it in place (a refresh touches its row and the expiry index, nothing
/// else). The owner must exist: the foreign key refuses a binding of an unknown account.
const UPSERT_BINDING: &str = "INSERT INTO bindings (aor, contact, instance_id, reg_id, call_id, cseq, expires_at, q, \
     received, path, user_agent, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
     ON CONFLICT (aor, contact) DO UPDATE SET instance_id = excluded.instance_id, reg_id = excluded.reg_id, \
     call_id = excluded.call_id, cseq = excluded.cseq, expires_at = excluded.expires_at, q = excluded.q, \
     received = excluded.received, path = excluded.path, user_agent = excluded.user_agent, \
     updated_at = excluded.updated_at";

/// Refreshes one binding in place if it exists: the common case of a registrar's writes, and cheaper than
/// [`UPSERT_BINDING`] (no failed insert, no foreign-key lookup: the row's owner exists, or the row would
/// have been deleted with it).
const UPDATE_BINDING: &str = "UPDATE bindings SET instance_id = ?3, reg_id = ?4, call_id = ?5, cseq = ?6, \
     expires_at = ?7, q = ?8, received = ?9, path = ?10, user_agent = ?11, updated_at = ?12 \
     WHERE aor = ?1 AND contact = ?2";

/// Creates or replaces one binding inside `tx`; its owner must exist.
fn insert_binding(tx: &Transaction<'_>, b: &Binding, path: &str) -> Result<()> {
    let aor = Aor::parse(&b.aor, None)?;
    let params = params![
        aor.as_str(),
        b.contact,
        b.instance_id,
        b.reg_id,
        b.call_id,
        b.cseq,
        b.expires_at,
        b.q,
        b.received,
        path,
        b.user_agent,
        b.updated_at
    ];
    if exec(tx, UPDATE_BINDING, params).map_err(backend)? > 0 {
        return Ok(());
    }
    match exec(tx, UPSERT_BINDING, params) {
        Ok(_) => Ok(()),
        Err(e) if is_foreign_key_violation(&e) => Err(StoreError::not_found("account", aor.as_str())),
        Err(e) => Err(backend(e)),
    }
}
