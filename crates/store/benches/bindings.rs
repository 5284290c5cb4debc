//! What a registrar's group commit costs: `apply_bindings` with 1 and with 64 refreshes of existing
//! bindings, on a file store with `synchronous = normal` (no fsync per commit, so the figure is the CPU
//! of the write) and `full`.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use vienna_store::{Aor, Binding, BindingChange, NewAccount, Secrets, SqliteOptions, SqliteStore, Store, Synchronous};

const USERS: usize = 1000;

fn binding(i: usize, expires_at: i64) -> Binding {
    Binding {
        aor: format!("sip:user{i}@example.test"),
        contact: format!("sip:user{i}@192.0.2.1:5060"),
        instance_id: None,
        reg_id: None,
        call_id: format!("call-{i}"),
        cseq: 2,
        expires_at,
        q: None,
        received: Some("udp:192.0.2.1:5060".into()),
        path: Vec::new(),
        user_agent: Some("bench".into()),
        updated_at: 1,
    }
}

fn store(dir: &tempfile::TempDir, synchronous: Synchronous) -> SqliteStore {
    let store =
        SqliteStore::open(&dir.path().join("b.db"), &SqliteOptions { synchronous, ..Default::default() }).unwrap();
    for i in 0..USERS {
        let aor = Aor::parse(&format!("user{i}"), Some("example.test")).unwrap();
        let secrets = Secrets::derive(&format!("user{i}"), "example.test", "pw");
        store.add_account(&NewAccount { aor, display_name: String::new(), enabled: true, secrets }, 0).unwrap();
        store.put_binding(&binding(i, 1_000)).unwrap();
    }
    store
}

fn bench(c: &mut Criterion) {
    for (name, sync) in [("normal", Synchronous::Normal), ("full", Synchronous::Full)] {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir, sync);
        let mut n = 0usize;
        let mut expires = 2_000i64;
        for batch in [1usize, 64] {
            c.bench_function(&format!("apply_bindings_{batch}_refreshes_{name}"), |b| {
                b.iter_batched(
                    || {
                        expires += 1;
                        (0..batch)
                            .map(|_| {
                                n = (n + 1) % USERS;
                                BindingChange::Put(binding(n, expires))
                            })
                            .collect::<Vec<_>>()
                    },
                    |changes| s.apply_bindings(&changes).unwrap(),
                    BatchSize::SmallInput,
                )
            });
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
