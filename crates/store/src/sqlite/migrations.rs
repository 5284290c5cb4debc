//! Schema migrations of the SQLite back end, applied in order at open, one transaction each.
//!
//! `PRAGMA user_version` holds the number of migrations applied. Never edit a released migration: add one.

/// The migrations; index + 1 is the schema version each one produces.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: accounts, bindings, contact lists, ACLs, watchers, conferences.
    r#"
    CREATE TABLE accounts (
        uri           TEXT PRIMARY KEY,
        display_name  TEXT NOT NULL DEFAULT '',
        enabled       INTEGER NOT NULL DEFAULT 1,
        realm         TEXT NOT NULL,
        auth_username TEXT NOT NULL,
        ha1_md5       BLOB NOT NULL,
        ha1_sha256    BLOB NOT NULL,
        nt_hash       BLOB NOT NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        list_version  INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE INDEX accounts_by_auth ON accounts (auth_username, realm);

    CREATE TABLE bindings (
        aor         TEXT NOT NULL REFERENCES accounts (uri) ON DELETE CASCADE,
        contact     TEXT NOT NULL,
        instance_id TEXT,
        reg_id      INTEGER,
        call_id     TEXT NOT NULL,
        cseq        INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        q           INTEGER,
        received    TEXT,
        path        TEXT NOT NULL DEFAULT '[]',
        user_agent  TEXT,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (aor, contact)
    ) STRICT;
    CREATE INDEX bindings_by_expiry ON bindings (expires_at);

    CREATE TABLE contact_groups (
        owner TEXT NOT NULL REFERENCES accounts (uri) ON DELETE CASCADE,
        id    INTEGER NOT NULL,
        name  TEXT NOT NULL,
        PRIMARY KEY (owner, id),
        UNIQUE (owner, name)
    ) STRICT;

    CREATE TABLE contacts (
        owner        TEXT NOT NULL REFERENCES accounts (uri) ON DELETE CASCADE,
        uri          TEXT NOT NULL,
        display_name TEXT NOT NULL DEFAULT '',
        subscribed   INTEGER NOT NULL DEFAULT 1,
        PRIMARY KEY (owner, uri)
    ) STRICT;

    CREATE TABLE contact_group_members (
        owner    TEXT NOT NULL,
        uri      TEXT NOT NULL,
        group_id INTEGER NOT NULL,
        PRIMARY KEY (owner, uri, group_id),
        FOREIGN KEY (owner, uri) REFERENCES contacts (owner, uri) ON DELETE CASCADE,
        FOREIGN KEY (owner, group_id) REFERENCES contact_groups (owner, id) ON DELETE CASCADE
    ) STRICT;

    CREATE TABLE aces (
        owner       TEXT NOT NULL REFERENCES accounts (uri) ON DELETE CASCADE,
        scope_kind  TEXT NOT NULL CHECK (scope_kind IN ('user', 'domain', 'everyone')),
        scope_value TEXT NOT NULL DEFAULT '',
        level       TEXT NOT NULL CHECK (level IN ('allow', 'block')),
        PRIMARY KEY (owner, scope_kind, scope_value)
    ) STRICT;

    CREATE TABLE watchers (
        owner        TEXT NOT NULL REFERENCES accounts (uri) ON DELETE CASCADE,
        uri          TEXT NOT NULL,
        display_name TEXT,
        state        TEXT NOT NULL CHECK (state IN ('pending', 'allowed', 'blocked')),
        first_seen   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL,
        PRIMARY KEY (owner, uri)
    ) STRICT;

    CREATE TABLE conferences (
        id               TEXT PRIMARY KEY,
        organizer        TEXT NOT NULL REFERENCES accounts (uri) ON DELETE CASCADE,
        subject          TEXT NOT NULL DEFAULT '',
        locked           INTEGER NOT NULL DEFAULT 0,
        max_participants INTEGER,
        created_at       INTEGER NOT NULL,
        expires_at       INTEGER
    ) STRICT;
    "#,
    // 2: manual presence states that outlive device sessions (MS-PRES static userState).
    r#"
    CREATE TABLE manual_presence (
        owner        TEXT PRIMARY KEY REFERENCES accounts (uri) ON DELETE CASCADE,
        availability INTEGER NOT NULL CHECK (availability BETWEEN 0 AND 100000),
        activity     TEXT,
        note         TEXT,
        updated_at   INTEGER NOT NULL
    ) STRICT;
    "#,
];
