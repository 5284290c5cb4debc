//! The back-end-independent test suite every [`Store`] implementation must pass.
//!
//! Call [`run_all`] with a factory that returns a fresh, empty store. Each check panics with a message
//! naming what failed; they are plain functions so a back end's test file can also call them one by one.

use crate::{
    AccessLevel, AccountUpdate, Ace, AceScope, Aor, Binding, BindingChange, ConferenceRecord, ContactEntry,
    ManualPresence, NewAccount, Secrets, Store, StoreError, Watcher, WatcherState,
};

/// A named check of the suite.
pub type Check = (&'static str, fn(&dyn Store));

/// Every check, by name.
pub const CHECKS: &[Check] = &[
    ("accounts", accounts),
    ("secrets", secrets),
    ("bindings", bindings),
    ("contact_list", contact_list),
    ("aces", aces),
    ("watchers", watchers),
    ("manual_presence", manual_presence),
    ("conferences", conferences),
    ("cascade_on_account_removal", cascade_on_account_removal),
    ("rejects_bad_values", rejects_bad_values),
];

/// Runs every check, each on a fresh store from `fresh`.
pub fn run_all(fresh: &dyn Fn() -> Box<dyn Store>) {
    for (name, check) in CHECKS {
        let store = fresh();
        eprintln!("conformance: {name}");
        check(store.as_ref());
    }
}

/// `sip:NAME@example.test`.
pub fn aor(name: &str) -> Aor {
    Aor::parse(name, Some("example.test")).expect("test AOR")
}

/// Creates an enabled account `sip:NAME@example.test` with password `pw-NAME`.
pub fn add_user(store: &dyn Store, name: &str) -> Aor {
    let aor = aor(name);
    store
        .add_account(
            &NewAccount {
                aor: aor.clone(),
                display_name: format!("User {name}"),
                enabled: true,
                secrets: Secrets::derive(name, "example.test", &format!("pw-{name}")),
            },
            1_000,
        )
        .expect("add account");
    aor
}

fn accounts(store: &dyn Store) {
    store.ping().expect("ping");
    let alice = add_user(store, "alice");
    let bob = add_user(store, "bob");
    let dup = store.add_account(
        &NewAccount {
            aor: alice.clone(),
            display_name: String::new(),
            enabled: true,
            secrets: Secrets::derive("alice", "example.test", "x"),
        },
        2_000,
    );
    assert!(matches!(dup, Err(StoreError::AlreadyExists { .. })), "duplicate account accepted: {dup:?}");

    let listed: Vec<String> = store.list_accounts().unwrap().into_iter().map(|a| a.uri).collect();
    assert_eq!(listed, ["sip:alice@example.test", "sip:bob@example.test"]);

    let a = store.account(&alice).unwrap().expect("alice exists");
    assert_eq!((a.display_name.as_str(), a.enabled, a.created_at), ("User alice", true, 1_000));

    let updated = store
        .update_account(
            &bob,
            &AccountUpdate { display_name: Some("Robert".into()), enabled: Some(false), secrets: None },
            3_000,
        )
        .unwrap();
    assert_eq!((updated.display_name.as_str(), updated.enabled, updated.updated_at), ("Robert", false, 3_000));
    assert_eq!(store.account(&bob).unwrap().unwrap(), updated);

    let ghost = aor("ghost");
    assert!(store.account(&ghost).unwrap().is_none());
    assert!(matches!(store.remove_account(&ghost), Err(StoreError::NotFound { .. })));
    assert!(matches!(store.update_account(&ghost, &AccountUpdate::default(), 1), Err(StoreError::NotFound { .. })));

    store.remove_account(&alice).unwrap();
    assert!(store.account(&alice).unwrap().is_none());
    store.flush().expect("flush");
}

fn secrets(store: &dyn Store) {
    let alice = add_user(store, "alice");
    let (_, s) = store.account_secrets(&alice).unwrap().expect("secrets");
    assert_eq!(s, Secrets::derive("alice", "example.test", "pw-alice"));
    let (acct, s2) = store.account_by_auth_username("alice", "example.test").unwrap().expect("by name");
    assert_eq!((acct.uri.as_str(), &s2), (alice.as_str(), &s));
    assert!(store.account_by_auth_username("alice", "other.realm").unwrap().is_none());

    let new = Secrets::derive("alice", "example.test", "new password");
    store.update_account(&alice, &AccountUpdate { secrets: Some(new.clone()), ..Default::default() }, 5).unwrap();
    assert_eq!(store.account_secrets(&alice).unwrap().unwrap().1, new);
    assert_eq!(store.account(&alice).unwrap().unwrap().display_name, "User alice", "display name kept");
}

/// A binding of `aor` for `contact` expiring at `expires_at`.
pub fn binding(aor: &Aor, contact: &str, expires_at: i64) -> Binding {
    Binding {
        aor: aor.to_string(),
        contact: contact.into(),
        instance_id: Some("<urn:uuid:00000000-0000-0000-0000-000000000001>".into()),
        reg_id: Some(1),
        call_id: "call-1".into(),
        cseq: 7,
        expires_at,
        q: Some(500),
        received: Some("udp:127.0.0.1:5062".into()),
        path: vec!["<sip:edge.example.test;lr>".into()],
        user_agent: Some("test".into()),
        updated_at: 100,
    }
}

fn bindings(store: &dyn Store) {
    let alice = add_user(store, "alice");
    let bob = add_user(store, "bob");
    let b1 = binding(&alice, "sip:alice@127.0.0.1:5062", 2_000);
    let b2 = Binding { contact: "sip:alice@127.0.0.1:5064".into(), expires_at: 1_000, ..b1.clone() };
    store.put_binding(&b1).unwrap();
    store.put_binding(&b2).unwrap();
    store.put_binding(&binding(&bob, "sip:bob@127.0.0.1:5070", 3_000)).unwrap();
    assert_eq!(store.bindings(&alice, 500).unwrap(), vec![b1.clone(), b2.clone()]);
    assert_eq!(store.bindings(&alice, 1_000).unwrap(), vec![b1.clone()], "expired binding hidden");
    assert_eq!(store.all_bindings(1_500).unwrap().len(), 2);

    let refreshed = Binding { cseq: 8, expires_at: 4_000, ..b1.clone() };
    store.put_binding(&refreshed).unwrap();
    assert_eq!(store.bindings(&alice, 1_500).unwrap(), vec![refreshed.clone()], "refresh replaces");

    assert_eq!(store.remove_expired_bindings(1_000).unwrap(), 1);
    assert!(store.remove_binding(&alice, &refreshed.contact).unwrap());
    assert!(!store.remove_binding(&alice, &refreshed.contact).unwrap());
    assert_eq!(store.remove_bindings(&bob).unwrap(), 1);
    assert!(store.all_bindings(0).unwrap().is_empty());

    let stranger = binding(&aor("nobody"), "sip:x@127.0.0.1", 10);
    assert!(matches!(store.put_binding(&stranger), Err(StoreError::NotFound { .. })));

    // A batch is applied in order, and all or nothing.
    let c1 = binding(&alice, "sip:alice@127.0.0.1:6000", 5_000);
    let c2 = binding(&alice, "sip:alice@127.0.0.1:6002", 5_000);
    let remove_c1 = BindingChange::Remove { aor: c1.aor.clone(), contact: c1.contact.clone() };
    store.apply_bindings(&[BindingChange::Put(c1.clone()), BindingChange::Put(c2.clone()), remove_c1]).unwrap();
    assert_eq!(store.bindings(&alice, 0).unwrap(), vec![c2.clone()]);
    let failing =
        [BindingChange::Remove { aor: c2.aor.clone(), contact: c2.contact.clone() }, BindingChange::Put(stranger)];
    assert!(store.apply_bindings(&failing).is_err());
    assert_eq!(store.bindings(&alice, 0).unwrap(), vec![c2], "a failed batch changes nothing");
}

fn contact_list(store: &dyn Store) {
    let alice = add_user(store, "alice");
    assert_eq!(store.contact_list(&alice).unwrap().version, 0);
    let (friends, v1) = store.add_group(&alice, "Friends").unwrap();
    let (work, v2) = store.add_group(&alice, "Work").unwrap();
    assert!(v2 > v1 && friends.id != work.id);
    assert!(matches!(store.add_group(&alice, "Work"), Err(StoreError::AlreadyExists { .. })));

    let bob = ContactEntry {
        uri: "sip:bob@example.test".into(),
        display_name: "Bob".into(),
        groups: vec![friends.id, work.id],
        subscribed: true,
    };
    let v3 = store.put_contact(&alice, &bob).unwrap();
    let carol = ContactEntry {
        uri: "sip:carol@elsewhere.test".into(),
        display_name: String::new(),
        groups: vec![],
        subscribed: false,
    };
    store.put_contact(&alice, &carol).unwrap();
    let list = store.contact_list(&alice).unwrap();
    assert!(list.version > v3);
    assert_eq!(list.groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["Friends", "Work"]);
    assert_eq!(list.contacts, vec![bob.clone(), carol.clone()]);

    let bad_group = ContactEntry { groups: vec![99], ..bob.clone() };
    assert!(matches!(store.put_contact(&alice, &bad_group), Err(StoreError::NotFound { .. })));
    assert_eq!(store.contact_list(&alice).unwrap().contacts[0], bob, "failed put changes nothing");

    store.rename_group(&alice, work.id, "Office").unwrap();
    store.remove_group(&alice, friends.id).unwrap();
    let list = store.contact_list(&alice).unwrap();
    assert_eq!(list.groups, vec![crate::Group { id: work.id, name: "Office".into() }]);
    assert_eq!(list.contacts[0].groups, vec![work.id], "contact leaves a removed group");
    assert!(matches!(store.remove_group(&alice, 4242), Err(StoreError::NotFound { .. })));

    store.remove_contact(&alice, &carol.uri).unwrap();
    assert!(matches!(store.remove_contact(&alice, &carol.uri), Err(StoreError::NotFound { .. })));
    assert_eq!(store.contact_list(&alice).unwrap().contacts.len(), 1);
    assert!(matches!(store.contact_list(&aor("nobody")), Err(StoreError::NotFound { .. })));
}

fn aces(store: &dyn Store) {
    let alice = add_user(store, "alice");
    let before = store.contact_list(&alice).unwrap().version;
    let entries = [
        Ace { scope: AceScope::User("sip:bob@example.test".into()), level: AccessLevel::Allow },
        Ace { scope: AceScope::Domain("spam.test".into()), level: AccessLevel::Block },
        Ace { scope: AceScope::Everyone, level: AccessLevel::Allow },
    ];
    for ace in &entries {
        store.put_ace(&alice, ace).unwrap();
    }
    let blocked_bob = Ace { scope: entries[0].scope.clone(), level: AccessLevel::Block };
    store.put_ace(&alice, &blocked_bob).unwrap();
    let got = store.aces(&alice).unwrap();
    assert_eq!(got.len(), 3);
    assert!(got.contains(&blocked_bob) && got.contains(&entries[1]) && got.contains(&entries[2]));
    assert!(store.contact_list(&alice).unwrap().version >= before + 4, "ACL changes raise the list version");
    store.remove_ace(&alice, &AceScope::Everyone).unwrap();
    assert!(matches!(store.remove_ace(&alice, &AceScope::Everyone), Err(StoreError::NotFound { .. })));
    assert_eq!(store.aces(&alice).unwrap().len(), 2);
}

fn watchers(store: &dyn Store) {
    let alice = add_user(store, "alice");
    let w = Watcher {
        uri: "sip:bob@example.test".into(),
        display_name: Some("Bob".into()),
        state: WatcherState::Pending,
        first_seen: 10,
        updated_at: 10,
    };
    store.put_watcher(&alice, &w).unwrap();
    let allowed = Watcher { state: WatcherState::Allowed, updated_at: 20, ..w.clone() };
    store.put_watcher(&alice, &allowed).unwrap();
    let blocked = Watcher {
        uri: "sip:eve@example.test".into(),
        display_name: None,
        state: WatcherState::Blocked,
        first_seen: 30,
        updated_at: 30,
    };
    store.put_watcher(&alice, &blocked).unwrap();
    assert_eq!(store.watchers(&alice).unwrap(), vec![allowed.clone(), blocked.clone()]);
    assert!(store.remove_watcher(&alice, &blocked.uri).unwrap());
    assert!(!store.remove_watcher(&alice, &blocked.uri).unwrap());
    assert!(matches!(store.put_watcher(&aor("nobody"), &w), Err(StoreError::NotFound { .. })));
}

fn manual_presence(store: &dyn Store) {
    let alice = add_user(store, "alice");
    assert_eq!(store.manual_presence(&alice).unwrap(), None);
    let away = ManualPresence { availability: 15500, activity: None, note: Some("back at 3".into()), updated_at: 5 };
    store.set_manual_presence(&alice, Some(&away)).unwrap();
    assert_eq!(store.manual_presence(&alice).unwrap(), Some(away));
    let meeting =
        ManualPresence { availability: 6500, activity: Some("in-a-meeting".into()), note: None, updated_at: 6 };
    store.set_manual_presence(&alice, Some(&meeting)).unwrap();
    assert_eq!(store.manual_presence(&alice).unwrap(), Some(meeting.clone()));
    store.set_manual_presence(&alice, None).unwrap();
    assert_eq!(store.manual_presence(&alice).unwrap(), None);
    assert!(matches!(store.set_manual_presence(&aor("nobody"), Some(&meeting)), Err(StoreError::NotFound { .. })));
    let bad = ManualPresence { availability: 200_000, ..meeting.clone() };
    assert!(matches!(store.set_manual_presence(&alice, Some(&bad)), Err(StoreError::Invalid { .. })));
    store.set_manual_presence(&alice, Some(&meeting)).unwrap();
    store.remove_account(&alice).unwrap();
    add_user(store, "alice");
    assert_eq!(store.manual_presence(&alice).unwrap(), None, "removed with its account");
}

/// A conference `id` organized by `organizer`.
pub fn conference(id: &str, organizer: &Aor) -> ConferenceRecord {
    ConferenceRecord {
        id: id.into(),
        organizer: organizer.to_string(),
        subject: "Weekly sync".into(),
        locked: false,
        max_participants: Some(50),
        created_at: 100,
        expires_at: Some(86_500),
    }
}

fn conferences(store: &dyn Store) {
    let alice = add_user(store, "alice");
    let c = conference("A1B2C3", &alice);
    store.add_conference(&c).unwrap();
    assert!(matches!(store.add_conference(&c), Err(StoreError::AlreadyExists { .. })));
    let locked = ConferenceRecord { locked: true, subject: "Locked".into(), expires_at: None, ..c.clone() };
    store.update_conference(&locked).unwrap();
    assert_eq!(store.conference("A1B2C3").unwrap(), Some(locked.clone()));
    store.add_conference(&conference("Z9", &alice)).unwrap();
    assert_eq!(store.list_conferences().unwrap().iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["A1B2C3", "Z9"]);
    assert!(store.remove_conference("Z9").unwrap());
    assert!(!store.remove_conference("Z9").unwrap());
    assert!(matches!(store.update_conference(&conference("Z9", &alice)), Err(StoreError::NotFound { .. })));
    assert!(matches!(store.add_conference(&conference("X", &aor("nobody"))), Err(StoreError::NotFound { .. })));
}

fn cascade_on_account_removal(store: &dyn Store) {
    let alice = add_user(store, "alice");
    let bob = add_user(store, "bob");
    let (g, _) = store.add_group(&alice, "Friends").unwrap();
    store
        .put_contact(
            &alice,
            &ContactEntry { uri: bob.to_string(), display_name: "Bob".into(), groups: vec![g.id], subscribed: true },
        )
        .unwrap();
    store.put_ace(&alice, &Ace { scope: AceScope::Everyone, level: AccessLevel::Allow }).unwrap();
    store
        .put_watcher(
            &alice,
            &Watcher {
                uri: bob.to_string(),
                display_name: None,
                state: WatcherState::Allowed,
                first_seen: 1,
                updated_at: 1,
            },
        )
        .unwrap();
    store.put_binding(&binding(&alice, "sip:alice@127.0.0.1:5062", 10_000)).unwrap();
    store.add_conference(&conference("C1", &alice)).unwrap();

    store.remove_account(&alice).unwrap();
    let again = add_user(store, "alice");
    let list = store.contact_list(&again).unwrap();
    assert!(list.groups.is_empty() && list.contacts.is_empty(), "contact list removed with the account");
    assert!(store.aces(&again).unwrap().is_empty());
    assert!(store.watchers(&again).unwrap().is_empty());
    assert!(store.bindings(&again, 0).unwrap().is_empty());
    assert!(store.conference("C1").unwrap().is_none());
    assert!(store.account(&bob).unwrap().is_some(), "other accounts untouched");
}

fn rejects_bad_values(store: &dyn Store) {
    let alice = add_user(store, "alice");
    let long = "x".repeat(5_000);
    assert!(matches!(store.add_group(&alice, ""), Err(StoreError::Invalid { .. })));
    assert!(matches!(store.add_group(&alice, &long), Err(StoreError::Invalid { .. })));
    assert!(matches!(store.add_group(&alice, "a\nb"), Err(StoreError::Invalid { .. })));
    let contact = ContactEntry { uri: long.clone(), display_name: String::new(), groups: vec![], subscribed: true };
    assert!(matches!(store.put_contact(&alice, &contact), Err(StoreError::Invalid { .. })));
    let mut b = binding(&alice, "sip:a@127.0.0.1", 10);
    b.q = Some(1001);
    assert!(matches!(store.put_binding(&b), Err(StoreError::Invalid { .. })));
    let mut c = conference("bad id with spaces", &alice);
    assert!(matches!(store.add_conference(&c), Err(StoreError::Invalid { .. })));
    c.id = String::new();
    assert!(matches!(store.add_conference(&c), Err(StoreError::Invalid { .. })));
    assert!(matches!(
        store.put_ace(&alice, &Ace { scope: AceScope::User(String::new()), level: AccessLevel::Allow }),
        Err(StoreError::Invalid { .. })
    ));
    assert_eq!(store.contact_list(&alice).unwrap().version, 0, "rejected writes change nothing");
}
