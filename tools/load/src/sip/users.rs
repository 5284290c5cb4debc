//! The users a SIP run acts as: `--users N` names made from a pattern (`user{n}` with password
//! `pw-user{n}`, `{n}` counting from `--first-user`), or a file (`--users-file`) with one `name;password`
//! (or `name,password`) per line, as SIPp's injection files have them (a first line `SEQUENTIAL`,
//! `RANDOM` or `USER`, and lines starting with `#`, are skipped).

use std::path::Path;

use anyhow::{Context, bail};

/// One user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    /// User part of the address and Digest user name.
    pub name: String,
    /// Digest password.
    pub password: String,
}

/// Expands `pattern` for `n`: every `{n}` becomes the number.
pub fn expand(pattern: &str, n: u64) -> String {
    pattern.replace("{n}", &n.to_string())
}

/// `count` users from the patterns, numbered from `first`.
pub fn from_pattern(name: &str, password: &str, first: u64, count: u64) -> anyhow::Result<Vec<UserSpec>> {
    if count == 0 {
        bail!("--users must be at least 1");
    }
    if count > 1 && !name.contains("{n}") {
        bail!("--user-pattern {name:?} has no {{n}}: {count} users would have the same name");
    }
    Ok((first..first + count).map(|n| UserSpec { name: expand(name, n), password: expand(password, n) }).collect())
}

/// Users read from a file (see the module docs); at most `limit` of them when given.
pub fn from_file(path: &Path, limit: Option<u64>) -> anyhow::Result<Vec<UserSpec>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if i == 0 && matches!(line, "SEQUENTIAL" | "RANDOM" | "USER" | "SEQUENTIAL,PRINTF=1") {
            continue;
        }
        let mut fields = line.split([';', ',']);
        let name = fields.next().unwrap_or("").trim();
        let password = fields.next().unwrap_or("").trim();
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '@' || c == ':') {
            bail!("{}:{}: bad user name {name:?}", path.display(), i + 1);
        }
        out.push(UserSpec { name: name.to_owned(), password: password.to_owned() });
        if limit.is_some_and(|l| out.len() as u64 >= l) {
            break;
        }
    }
    if out.is_empty() {
        bail!("{}: no users", path.display());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let u = from_pattern("user{n}", "pw-user{n}", 5, 3).unwrap();
        assert_eq!(u[0], UserSpec { name: "user5".into(), password: "pw-user5".into() });
        assert_eq!(u[2].name, "user7");
        assert!(from_pattern("alice", "x", 0, 2).is_err());
        assert_eq!(from_pattern("alice", "secret", 0, 1).unwrap()[0].name, "alice");
        assert!(from_pattern("u{n}", "p", 0, 0).is_err());
    }

    #[test]
    fn files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users.csv");
        std::fs::write(&p, "SEQUENTIAL\n# comment\nalice;secret\nbob,pw2\n\ncarol;\n").unwrap();
        let u = from_file(&p, None).unwrap();
        assert_eq!(u.len(), 3);
        assert_eq!(u[1], UserSpec { name: "bob".into(), password: "pw2".into() });
        assert_eq!(u[2].password, "");
        assert_eq!(from_file(&p, Some(2)).unwrap().len(), 2);
        std::fs::write(&p, "a b;c\n").unwrap();
        assert!(from_file(&p, None).is_err());
    }
}
