//! The core's hooks for Microsoft clients (see [`crate::msclient`]): NTLM before everything else, the
//! REGISTER answer these clients expect, their self subscriptions, category presence subscriptions with
//! BENOTIFY, SERVICE operations, server-initiated deregistration. A child module of the core, so it works
//! on the core's own state; `core.rs` only calls in at a few narrow points.

use std::time::{Duration, Instant};

use vienna_presence::PresenceState;
use vienna_sip::transaction::{Peer, TransactionId};
use vienna_sip::{HeaderName, Message, Method, Request, Response};
use vienna_sipae::NtlmAccount;
use vienna_store::{AccessLevel, Ace, AceScope, ContactEntry, WatcherState};

use super::Core;
use crate::directory::{ContactEdit, Directory};
use crate::msclient::auth::{Checked, ntlm_aor};
use crate::msclient::documents::{self as docs, Provisioning};
use crate::msclient::service::{self, SoapOp};
use crate::msclient::{Format, MsCounters, MsDialog, MsSub, SubKind};

/// Events of the Microsoft self subscriptions.
const SELF_EVENTS: &[&str] = &[
    "vnd-microsoft-provisioning-v2",
    "vnd-microsoft-provisioning",
    "vnd-microsoft-roaming-contacts",
    "vnd-microsoft-roaming-self",
    "vnd-microsoft-roaming-acl",
    "presence.wpending",
];
/// What a REGISTER 200 OK lists in Allow-Events for Microsoft clients (comma-separated without blanks:
/// SIPE splits on `,` and does not trim).
const MS_ALLOW_EVENTS: &str = "presence,presence.winfo,vnd-microsoft-provisioning-v2,vnd-microsoft-roaming-contacts,\
vnd-microsoft-roaming-self,vnd-microsoft-provisioning,vnd-microsoft-roaming-ACL,presence.wpending";
/// Allow-Events of an LCS 2005 server.
const LCS2005_ALLOW_EVENTS: &str = "presence,presence.winfo,vnd-microsoft-provisioning,vnd-microsoft-roaming-contacts,vnd-microsoft-roaming-ACL,presence.wpending";
/// Most category instances one user may hold, containers and members per container (403 beyond).
const MAX_INSTANCES: usize = 512;
const MAX_CONTAINERS: usize = 64;
const MAX_MEMBERS: usize = 1024;
/// Most acknowledged subscribers remembered per user.
const MAX_ACKNOWLEDGED: usize = 10_000;
/// How often the accounts of registered Microsoft clients are checked.
const ACCOUNT_CHECK: Duration = Duration::from_secs(5);
/// How long a category publication holds in the presence model without being published again.
const CATEGORY_TTL: Duration = Duration::from_secs(8 * 3600);

fn other(name: &str) -> HeaderName {
    HeaderName::Other(name.to_owned())
}

fn mime(ctype: Option<&str>) -> String {
    ctype.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

impl<D: Directory> Core<D> {
    /// Counters of the Microsoft-client support (NTLM included).
    pub fn ms_counters(&self) -> MsCounters {
        self.ms.counters()
    }

    /// Live Microsoft subscriptions (self and category presence).
    pub fn ms_subscriptions(&self) -> usize {
        self.ms.subscriptions()
    }

    /// Established NTLM security associations (one per connection).
    pub fn ntlm_associations(&self) -> usize {
        self.ms.auth.associations()
    }

    /// Where a GRUU of a registered endpoint (gruu-10 or RFC 5627) leads: its binding's flow. In-dialog
    /// requests to a Microsoft client carry its GRUU as the remote target.
    pub(super) fn gruu_peer(&self, uri: &vienna_sip::SipUri) -> Option<Peer> {
        if !self.config.is_local_domain(uri) {
            return None;
        }
        let Some(Ok((aor, Some(instance)))) = self.gruu_target(uri) else { return None };
        let unix = self.clock.unix(self.ms.now.unwrap_or(self.clock.instant));
        self.location
            .bindings(&aor, unix)
            .find(|b| b.instance_id.as_deref() == Some(instance.as_str()))
            .and_then(crate::location::binding_peer)
    }

    /// Removes the credentials this server consumed from a request it forwards (RFC 3261 §22.3): Digest
    /// `Proxy-Authorization` for its realm and every NTLM `Authorization`/`Proxy-Authorization`. Signed
    /// Microsoft clients read a `Proxy-Authorization` header first when checking a signature, so a forwarded
    /// Digest credential would make them reject the message.
    pub(super) fn strip_own_credentials(&self, req: &mut Request) {
        let realm = self.config.realm.clone();
        req.headers.0.retain(|h| {
            let proxy = h.name == HeaderName::ProxyAuthorization;
            if !(proxy || h.name == HeaderName::Authorization) {
                return true;
            }
            if vienna_sipae::NtlmParams::is_ntlm(&h.value) {
                return false;
            }
            let ours = vienna_sip::digest::parse_auth(&h.value)
                .ok()
                .and_then(|(_, p)| vienna_sip::digest::get(&p, "realm").map(|r| r == realm))
                .unwrap_or(false);
            !(proxy && ours)
        });
    }

    // ----- MS-SIPAE --------------------------------------------------------------------------------------

    /// Checks NTLM credentials of `req`; `false` when the request has been answered (challenge, refusal).
    pub(super) fn ms_authenticate(&mut self, now: Instant, id: TransactionId, req: &Request, peer: Peer) -> bool {
        self.ms.identity = None;
        self.ms.now = Some(now);
        self.ms.reliable_request = peer.transport.is_reliable();
        if !self.config.ms.enabled {
            return true;
        }
        let unix = self.clock.unix(now);
        let domain = self.config.domain.clone();
        let directory = &self.directory;
        let checked = self.ms.auth.check(unix, peer, req, |user, nb| {
            let aor = ntlm_aor(user, nb, &domain)?;
            let (account, nt_hash) = directory.ntlm_account(&aor)?;
            account.enabled.then_some(NtlmAccount { aor: account.aor, nt_hash })
        });
        match checked {
            Checked::NotNtlm => true,
            Checked::Authenticated(aor) => {
                self.ms.identity = Some(aor);
                true
            }
            Checked::Challenge { status, header } => {
                self.counters.auth_challenges += 1;
                let name = if status == 407 { HeaderName::ProxyAuthenticate } else { HeaderName::WwwAuthenticate };
                self.reply(now, id, req, status, None, |r| r.headers.push(name, header));
                false
            }
            Checked::Refused { status, reason } => {
                self.counters.auth_failures += 1;
                let offer = self.ms.auth.offer();
                self.reply(now, id, req, status, Some(reason), |r| match status {
                    401 => r.headers.push(HeaderName::WwwAuthenticate, offer),
                    407 => r.headers.push(HeaderName::ProxyAuthenticate, offer),
                    _ => {}
                });
                false
            }
        }
    }

    /// Adds the NTLM offer to a Digest challenge of a request that came over TCP or TLS.
    pub(super) fn ms_offer(&self, r: &mut Response, proxy: bool) {
        if self.config.ms.enabled && self.ms.reliable_request {
            let name = if proxy { HeaderName::ProxyAuthenticate } else { HeaderName::WwwAuthenticate };
            r.headers.push(name, self.ms.auth.offer());
        }
    }

    // ----- MS-SIPREGE REGISTER ---------------------------------------------------------------------------

    /// The headers a Microsoft client needs in its REGISTER 200 OK (MS-SIPREGE §3.1): Expires, one option
    /// tag per Supported line, the Microsoft events in Allow-Events. Also records the registration
    /// subscription (`Event: registration`) for server-initiated deregistration.
    pub(super) fn ms_register_headers(
        &mut self,
        aor: &str,
        req: &Request,
        peer: Peer,
        unix: u64,
    ) -> Vec<(HeaderName, String)> {
        let ms_client = self.config.ms.enabled
            && (req.headers.has_option_tag(&HeaderName::Supported, "msrtc-event-categories")
                || req.headers.has_option_tag(&HeaderName::Supported, "gruu-10")
                || self.ms.auth.identity(&peer).is_some());
        if !ms_client {
            return Vec::new();
        }
        let call_id = req.headers.call_id().unwrap_or_default();
        let remaining = self
            .location
            .bindings(aor, unix)
            .filter(|b| b.call_id == call_id)
            .map(|b| (b.expires_at - unix as i64).max(0))
            .max()
            .unwrap_or(0);
        if remaining > 0
            && req.headers.event().ok().flatten().is_some_and(|e| e.package.eq_ignore_ascii_case("registration"))
        {
            self.ms_record_registration(aor, req, peer);
        } else if remaining == 0 {
            self.ms.registrations.remove(&peer);
        }
        let mut h = vec![(HeaderName::Expires, remaining.to_string())];
        let lcs2005 = self.config.ms.lcs2005;
        for tag in ["adhoclist", "msrtc-event-categories", "ms-benotify", "gruu-10"] {
            if !(lcs2005 && tag == "msrtc-event-categories") {
                h.push((HeaderName::Supported, tag.to_owned()));
            }
        }
        h.push((HeaderName::AllowEvents, if lcs2005 { LCS2005_ALLOW_EVENTS } else { MS_ALLOW_EVENTS }.to_owned()));
        h
    }

    fn ms_record_registration(&mut self, aor: &str, req: &Request, peer: Peer) {
        let Some(target) = first_contact(req) else { return };
        let Some(contact) = self.config.contact(peer.transport) else { return };
        let mut local = match req.headers.to() {
            Ok(t) => t,
            Err(_) => return,
        };
        local.params.remove("tag");
        let dialog = MsDialog {
            call_id: req.headers.call_id().unwrap_or_default().to_owned(),
            local_tag: self.layer.new_tag(),
            local: local.to_string(),
            remote: req.headers.get(&HeaderName::From).unwrap_or_default().to_owned(),
            remote_target: target,
            cseq: 0,
            event: "registration-notify".into(),
            contact,
            peer,
        };
        self.ms.registrations.insert(peer, (aor.to_owned(), dialog));
    }

    /// Server-initiated deregistration (MS-SIPREGE §3.5): every Microsoft endpoint of `aor` registered with
    /// `Event: registration` gets a BENOTIFY `registration-notify` (`deregistered;event=<event>`, e.g.
    /// `rejected` for a disabled account, `unregistered` for signed out elsewhere), and all of `aor`'s
    /// bindings are removed. Returns the endpoints told.
    pub fn deregister(&mut self, now: Instant, aor: &str, event: &str, reason: &str) -> usize {
        let peers: Vec<Peer> = self.ms.registrations.iter().filter(|(_, (a, _))| a == aor).map(|(p, _)| *p).collect();
        for peer in &peers {
            if let Some((_, mut dialog)) = self.ms.registrations.remove(peer) {
                dialog.cseq += 1;
                let body = format!("deregistered;event={event}");
                let mut extra = vec![
                    (HeaderName::SubscriptionState, "terminated;expires=0".to_owned()),
                    (other("ms-diagnostics-public"), format!("4141;reason={}", vienna_sip::header::quote(reason))),
                ];
                extra.push((HeaderName::ContentType, "text/registration-event".into()));
                self.ms_send_on(now, &dialog, true, extra, body.into_bytes());
                self.ms.counters.deregistrations += 1;
            }
        }
        let unix = self.clock.unix(now);
        let gone: Vec<vienna_store::BindingChange> = self
            .location
            .all_of(aor)
            .iter()
            .map(|b| vienna_store::BindingChange::Remove { aor: b.aor.clone(), contact: b.contact.clone() })
            .collect();
        if !gone.is_empty() {
            self.location.replace(aor, Vec::new());
            self.out.push_back(super::Output::Persist(gone));
            self.presence.set_endpoints(now, aor, self.location.bindings(aor, unix).count());
        }
        self.drain_presence(now);
        self.pump(now);
        peers.len()
    }

    // ----- connections, timers, presence changes ---------------------------------------------------------

    /// A connection closed: its association, subscriptions and endpoint publications go.
    pub(super) fn ms_connection_closed(&mut self, now: Instant, peer: Peer) {
        self.ms.auth.connection_closed(&peer);
        self.ms.registrations.remove(&peer);
        let gone: Vec<u64> = self.ms.subs.iter().filter(|(_, s)| s.dialog.peer == peer).map(|(id, _)| *id).collect();
        for id in gone {
            self.ms.remove(id);
        }
        let owners: Vec<String> = self
            .ms
            .users
            .iter_mut()
            .filter_map(|(aor, u)| {
                let before = u.instances.len() + u.machine.len();
                u.machine.remove(&peer);
                u.instances.retain(|_, (c, p)| !(c.expire_type == "endpoint" && *p == Some(peer)));
                (u.instances.len() + u.machine.len() != before).then(|| aor.clone())
            })
            .collect();
        for owner in owners {
            self.ms_sync_presence(now, &owner);
            self.ms_notify_self(now, &owner);
        }
    }

    /// Ends expired subscriptions.
    pub(super) fn ms_timeout(&mut self, now: Instant) {
        self.ms.now = Some(now);
        let expired: Vec<u64> = self.ms.subs.iter().filter(|(_, s)| s.expires_at <= now).map(|(id, _)| *id).collect();
        for id in expired {
            if let Some(sub) = self.ms.remove(id) {
                let mut dialog = sub.dialog;
                dialog.cseq += 10;
                self.ms_send_on(
                    now,
                    &dialog,
                    sub.benotify,
                    vec![(HeaderName::SubscriptionState, "terminated;reason=timeout".into())],
                    Vec::new(),
                );
            }
        }
        let unix = self.clock.unix(now);
        self.ms.auth.expire(unix);
        // A disabled or removed account is signed out (MS-SIPREGE §3.5, `deregistered;event=rejected`).
        if self.ms.next_account_check.is_none_or(|t| t <= now) {
            self.ms.next_account_check = Some(now + ACCOUNT_CHECK);
            let mut aors: Vec<String> = self.ms.registrations.values().map(|(a, _)| a.clone()).collect();
            aors.sort_unstable();
            aors.dedup();
            for aor in aors {
                if !self.directory.account(&aor).is_some_and(|a| a.enabled) {
                    self.deregister(now, &aor, "rejected", "User disabled");
                }
            }
        }
    }

    /// Sends category notifications for presentities whose aggregate changed; `true` when anything went to
    /// the transaction layer.
    pub(super) fn ms_presence_changes(&mut self, now: Instant) -> bool {
        self.ms.now = Some(now);
        let changed = self.presence.take_changed();
        if changed.is_empty() {
            return false;
        }
        let mut sent = false;
        for aor in changed {
            for id in self.ms.watching(&aor) {
                self.ms_notify_presence(now, id, Some(&aor));
                sent = true;
            }
            // The user's own devices see their aggregate in the self view.
            if !self.ms.subs_of(&aor, &SubKind::RoamingSelf).is_empty() {
                self.ms_notify_self(now, &aor);
                sent = true;
            }
        }
        sent
    }

    // ----- requests --------------------------------------------------------------------------------------

    /// Takes the requests of Microsoft clients this module answers; `true` when answered.
    pub(super) fn ms_request(&mut self, now: Instant, id: TransactionId, req: &Request, peer: Peer) -> bool {
        match &req.method {
            Method::Subscribe => self.ms_subscribe(now, id, req, peer),
            Method::Other(m) if m.eq_ignore_ascii_case("SERVICE") => self.ms_service(now, id, req),
            _ => false,
        }
    }

    /// The local user a request is addressed to (`sip:user@domain`), if any.
    fn local_user(&self, req: &Request) -> Option<String> {
        let uri = req.uri.as_sip()?;
        (uri.user.is_some() && self.config.is_local_domain(uri)).then(|| self.config.aor_of(uri))
    }

    fn ms_subscribe(&mut self, now: Instant, id: TransactionId, req: &Request, peer: Peer) -> bool {
        let Ok(Some(event)) = req.headers.event() else { return false };
        let package = event.package.to_ascii_lowercase();
        if let Some(tag) = req.headers.to_tag() {
            let key = (req.headers.call_id().unwrap_or_default().to_owned(), tag);
            let Some(&sid) = self.ms.dialogs.get(&key) else { return false };
            self.ms_resubscribe(now, id, req, peer, sid);
            return true;
        }
        let self_event = SELF_EVENTS.contains(&package.as_str());
        let ctype = mime(req.headers.get(&HeaderName::ContentType));
        let batched = package == "presence" && (ctype == service::ADRL_CATEGORYLIST || ctype == service::ADRL);
        let format = self.presence_format(req);
        if !(self_event || batched || (package == "presence" && format.is_some())) {
            return false;
        }
        let Some(resource) = self.local_user(req) else { return false };
        let unix = self.clock.unix(now);
        let Some(sender) = self.authenticate_sender(now, id, req, unix) else { return true };
        match self.directory.account(&resource) {
            Some(a) if a.enabled => {}
            _ => {
                self.reply(now, id, req, 404, Some("Not Found (no such user)"), |_| {});
                return true;
            }
        }
        if (self_event || batched) && sender != resource {
            self.reply(now, id, req, 403, Some("Forbidden (self subscriptions are for their owner only)"), |_| {});
            return true;
        }
        let kind = match package.as_str() {
            "vnd-microsoft-roaming-contacts" => SubKind::RoamingContacts,
            "vnd-microsoft-roaming-self" => SubKind::RoamingSelf,
            "vnd-microsoft-roaming-acl" => SubKind::RoamingAcl,
            "presence.wpending" => SubKind::WPending,
            "vnd-microsoft-provisioning-v2" | "vnd-microsoft-provisioning" => {
                return self.ms_provisioning(now, id, req, &resource, &package);
            }
            _ if batched => match service::parse_batch(&req.body, self.config.ms.max_batch) {
                Ok(list) => SubKind::Presence(
                    list.iter()
                        .filter_map(|u| vienna_sip::Uri::parse(u).ok())
                        .filter_map(|u| u.as_sip().map(|s| self.config.aor_of(s)))
                        .collect(),
                ),
                Err(e) => {
                    self.ms.counters.bad_bodies += 1;
                    tracing::info!(error = %e, "ms: malformed batched subscription refused");
                    self.reply(now, id, req, 400, Some("Bad Request (malformed resource list)"), |_| {});
                    return true;
                }
            },
            _ => SubKind::Presence(vec![resource.clone()]),
        };
        let format = format.unwrap_or(if ctype == service::ADRL { Format::MsrtcPidf } else { Format::Categories });
        self.ms_new_subscription(now, id, req, peer, kind, format, batched, &sender);
        true
    }

    /// The document format a presence SUBSCRIBE asks for first (MS-PRES §1.3.3 order), when it is a
    /// Microsoft one.
    fn presence_format(&self, req: &Request) -> Option<Format> {
        let accepts: Vec<String> = req
            .headers
            .values(&HeaderName::Accept)
            .flat_map(vienna_sip::header::split_comma)
            .map(|v| mime(Some(v)))
            .collect();
        if accepts.iter().any(|a| a == docs::CATEGORIES) {
            return Some(Format::Categories);
        }
        if accepts.iter().any(|a| a == docs::MSRTC_PIDF) {
            return Some(Format::MsrtcPidf);
        }
        None
    }

    fn ms_provisioning(&mut self, now: Instant, id: TransactionId, req: &Request, aor: &str, package: &str) -> bool {
        let (ctype, body) = if package == "vnd-microsoft-provisioning-v2" {
            let p = Provisioning {
                mras_uri: self.config.ms.mras_uri.clone(),
                focus_factory_uri: format!("{aor};gruu;opaque=app:conf:focusfactory"),
                organization: self.config.ms.organization.clone(),
                pool_uri: format!("sip:{}", self.config.ms.targetname),
            };
            (docs::PROVISIONING_V2, docs::provisioning_v2(&p))
        } else {
            (docs::PROVISIONING, docs::provisioning_2005(aor))
        };
        self.ms.counters.self_subscriptions += 1;
        let tag = self.layer.new_tag();
        let cseq = req.headers.cseq().map(|c| c.seq).unwrap_or(0);
        let mut r = req.make_response_with_tag(200, None, &tag);
        r.headers.push(HeaderName::Server, self.config.server_name.clone());
        r.headers.push(HeaderName::Expires, "0");
        r.headers.push(HeaderName::Event, req.headers.get(&HeaderName::Event).unwrap_or(package).to_owned());
        r.headers.push(HeaderName::SubscriptionState, "terminated;expires=0");
        r.headers.push(other("ms-piggyback-cseq"), cseq.to_string());
        r.headers.push(HeaderName::ContentType, ctype);
        r.body = body.into_bytes();
        self.respond(now, id, r);
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn ms_new_subscription(
        &mut self,
        now: Instant,
        id: TransactionId,
        req: &Request,
        peer: Peer,
        kind: SubKind,
        format: Format,
        list: bool,
        sender: &str,
    ) {
        let asked = match req.headers.expires() {
            Ok(a) => a,
            Err(_) => return self.reply(now, id, req, 400, Some("Bad Request (malformed Expires header)"), |_| {}),
        };
        let p = &self.config.presence;
        let expires = match asked {
            None => p.default_expires,
            Some(0) => 0,
            Some(e) if e < p.min_expires => {
                let min = p.min_expires;
                return self
                    .reply(now, id, req, 423, None, |r| r.headers.push(HeaderName::MinExpires, min.to_string()));
            }
            Some(e) => e.min(p.max_expires),
        };
        let (Some(target), Ok(from)) = (first_contact(req), req.headers.from()) else {
            return self.reply(now, id, req, 400, Some("Bad Request (SUBSCRIBE without Contact or From)"), |_| {});
        };
        if from.tag().is_none() {
            return self.reply(now, id, req, 400, Some("Bad Request (From without tag)"), |_| {});
        }
        let Some(contact) = self.config.contact(peer.transport) else {
            return self.reply(now, id, req, 500, Some("Server Internal Error (no listener)"), |_| {});
        };
        if expires > 0 && self.ms.subscriptions() >= self.config.presence.max_subscriptions {
            return self.reply(now, id, req, 503, Some("Service Unavailable (too many subscriptions)"), |r| {
                r.headers.push(HeaderName::RetryAfter, "30")
            });
        }
        let Ok(mut local) = req.headers.to() else { return self.reply(now, id, req, 400, None, |_| {}) };
        local.params.remove("tag");
        let tag = self.layer.new_tag();
        let benotify = req.headers.has_option_tag(&HeaderName::Supported, "ms-benotify");
        let piggyback = req.headers.has_option_tag(&HeaderName::Supported, "ms-piggyback-first-notify");
        let dialog = MsDialog {
            call_id: req.headers.call_id().unwrap_or_default().to_owned(),
            local_tag: tag.clone(),
            local: local.to_string(),
            remote: req.headers.get(&HeaderName::From).unwrap_or_default().to_owned(),
            remote_target: target,
            cseq: 0,
            event: req.headers.get(&HeaderName::Event).unwrap_or("presence").to_owned(),
            contact: contact.clone(),
            peer: self.notify_peer(req, peer),
        };
        let is_presence = matches!(kind, SubKind::Presence(_));
        if is_presence {
            self.ms.counters.presence_subscriptions += 1;
            self.ms_record_watchers(&kind, sender, &from, now);
        } else {
            self.ms.counters.self_subscriptions += 1;
        }
        let sub = MsSub {
            kind,
            owner: sender.to_owned(),
            dialog,
            expires_at: now + Duration::from_secs(u64::from(expires)),
            benotify,
            format,
            list,
            version: 0,
            last_list: None,
        };
        let sid = self.ms.next_sub;
        self.ms.next_sub += 1;
        let mut r = req.make_response_with_tag(200, None, &tag);
        r.headers.push(HeaderName::Server, self.config.server_name.clone());
        r.headers.push(HeaderName::Expires, expires.to_string());
        r.headers.push(HeaderName::Contact, contact);
        if benotify {
            r.headers.push(HeaderName::Supported, "ms-benotify");
        }
        let first = if is_presence { None } else { self.ms_self_document(&sub) };
        let piggybacked = piggyback && first.is_some();
        if let (true, Some((ctype, body))) = (piggybacked, &first) {
            // MS-SIP §3.7.4.1: the first notification rides in the 200 OK.
            r.headers.push(HeaderName::Event, sub.dialog.event.clone());
            r.headers.push(HeaderName::SubscriptionState, format!("active;expires={expires}"));
            r.headers.push(other("ms-piggyback-cseq"), req.headers.cseq().map(|c| c.seq).unwrap_or(0).to_string());
            r.headers.push(HeaderName::ContentType, ctype.clone());
            r.body = body.clone();
        }
        let mut sub = sub;
        if let SubKind::RoamingContacts = sub.kind {
            sub.last_list = self.directory.contact_list(&sub.owner);
        }
        if expires > 0 {
            self.ms.dialogs.insert((sub.dialog.call_id.clone(), tag), sid);
            self.ms.subs.insert(sid, sub);
        }
        self.respond(now, id, r);
        if expires == 0 {
            return;
        }
        if is_presence {
            self.ms_notify_presence(now, sid, None);
        } else if !piggybacked && let Some((ctype, body)) = first {
            self.ms_notify(now, sid, Some((ctype, body)));
        }
    }

    /// Records undecided watchers of the resources of a presence subscription as pending (as the presence
    /// agent does for SIMPLE watchers).
    fn ms_record_watchers(&mut self, kind: &SubKind, watcher: &str, from: &vienna_sip::NameAddr, now: Instant) {
        let SubKind::Presence(resources) = kind else { return };
        let unix = self.clock.unix(now) as i64;
        let mut records = Vec::new();
        for r in resources {
            if r == watcher {
                continue;
            }
            let d = self.directory.watcher_decision(r, watcher);
            if d.state == WatcherState::Pending && !d.recorded {
                records.push((
                    r.clone(),
                    vienna_store::Watcher {
                        uri: watcher.to_owned(),
                        display_name: from.display_name().map(|d| d.into_owned()),
                        state: WatcherState::Pending,
                        first_seen: unix,
                        updated_at: unix,
                    },
                ));
            }
        }
        if !records.is_empty() {
            self.out.push_back(super::Output::PersistWatchers(records));
        }
    }

    fn ms_resubscribe(&mut self, now: Instant, id: TransactionId, req: &Request, peer: Peer, sid: u64) {
        let asked = req.headers.expires().ok().flatten();
        let Some(sub) = self.ms.subs.get_mut(&sid) else {
            return self.reply(now, id, req, 481, None, |_| {});
        };
        let p = &self.config.presence;
        let expires = match asked {
            None => p.default_expires,
            Some(e) => e.min(p.max_expires),
        };
        sub.dialog.peer = if peer.transport.is_reliable() { peer } else { sub.dialog.peer };
        if let Some(t) = first_contact(req) {
            sub.dialog.remote_target = t;
        }
        let tag = sub.dialog.local_tag.clone();
        let mut r = req.make_response_with_tag(200, None, &tag);
        r.headers.push(HeaderName::Expires, expires.to_string());
        r.headers.push(HeaderName::Contact, sub.dialog.contact.clone());
        if expires == 0 {
            self.ms.remove(sid);
            self.respond(now, id, r);
            return;
        }
        sub.expires_at = now + Duration::from_secs(u64::from(expires));
        self.respond(now, id, r);
    }

    // ----- documents and notifications -------------------------------------------------------------------

    /// The current document of a self subscription.
    fn ms_self_document(&self, sub: &MsSub) -> Option<(String, Vec<u8>)> {
        let owner = &sub.owner;
        let doc = match sub.kind {
            SubKind::RoamingContacts => {
                let list = self.directory.contact_list(owner).unwrap_or_default();
                (docs::ROAMING_CONTACTS, docs::contact_list(&list))
            }
            SubKind::RoamingSelf => (docs::ROAMING_SELF, self.ms_self_view(owner)),
            SubKind::RoamingAcl => {
                let version = self.directory.contact_list(owner).map_or(1, |l| l.version);
                (docs::ROAMING_ACLS, docs::roaming_acls(version, &self.directory.aces(owner)))
            }
            SubKind::WPending => (docs::WPENDING, docs::wpending(&self.directory.pending_watchers(owner))),
            SubKind::Presence(_) => return None,
        };
        Some((doc.0.to_owned(), doc.1.into_bytes()))
    }

    /// The roaming self view of `owner`.
    fn ms_self_view(&self, owner: &str) -> String {
        let unix = self.clock.unix(self.ms.now.unwrap_or(self.clock.instant));
        let now = docs::utc(unix);
        let user = self.ms.users.get(owner);
        let categories: Vec<docs::Category> =
            user.map(|u| u.instances.values().map(|(c, _)| c.clone()).collect()).unwrap_or_default();
        let containers: Vec<docs::Container> =
            user.map(|u| u.containers.values().cloned().collect()).unwrap_or_default();
        let subscribers: Vec<docs::Subscriber> = self
            .directory
            .pending_watchers(owner)
            .into_iter()
            .map(|(uri, display_name)| docs::Subscriber {
                acknowledged: user.is_some_and(|u| u.acknowledged.contains(docs::no_sip(&uri))),
                uri,
                display_name,
            })
            .collect();
        docs::roaming_self(owner, &self.presence.state_of(owner), &now, &categories, &containers, &subscribers)
    }

    /// Sends the self view to `owner`'s roaming-self subscriptions.
    fn ms_notify_self(&mut self, now: Instant, owner: &str) {
        for sid in self.ms.subs_of(owner, &SubKind::RoamingSelf) {
            let body = self.ms_self_view(owner).into_bytes();
            self.ms_notify(now, sid, Some((docs::ROAMING_SELF.to_owned(), body)));
        }
    }

    /// Sends the change of `owner`'s contact list (a `contactDelta`) to its roaming-contacts subscriptions.
    fn ms_notify_contacts(&mut self, now: Instant, owner: &str) {
        let Some(list) = self.directory.contact_list(owner) else { return };
        for sid in self.ms.subs_of(owner, &SubKind::RoamingContacts) {
            let Some(sub) = self.ms.subs.get_mut(&sid) else { continue };
            let doc = match &sub.last_list {
                Some(old) => docs::contact_delta(old, &list),
                None => Some(docs::contact_list(&list)),
            };
            sub.last_list = Some(list.clone());
            if let Some(doc) = doc {
                self.ms_notify(now, sid, Some((docs::ROAMING_CONTACTS.to_owned(), doc.into_bytes())));
            }
        }
        for sid in self.ms.subs_of(owner, &SubKind::RoamingAcl) {
            let Some(sub) = self.ms.subs.get(&sid) else { continue };
            if let Some(doc) = self.ms_self_document(sub) {
                self.ms_notify(now, sid, Some(doc));
            }
        }
    }

    /// What watcher `owner` may see of `resource`: the aggregate, Offline when blocked, nothing pending.
    fn ms_view(&self, owner: &str, resource: &str) -> Option<PresenceState> {
        if owner == resource {
            return Some(self.presence.state_of(resource));
        }
        let mut d = self.directory.watcher_decision(resource, owner);
        if self.config.presence.allow_unknown_watchers && d.state == WatcherState::Pending {
            d.state = WatcherState::Allowed;
        }
        match d.state {
            WatcherState::Allowed => Some(self.presence.state_of(resource)),
            WatcherState::Blocked => Some(PresenceState::offline()),
            WatcherState::Pending => None,
        }
    }

    /// Sends presence subscription `sid` the state of `only` (or of all its resources).
    fn ms_notify_presence(&mut self, now: Instant, sid: u64, only: Option<&str>) {
        let Some(sub) = self.ms.subs.get(&sid) else { return };
        let SubKind::Presence(resources) = &sub.kind else { return };
        let unix = self.clock.unix(now);
        let time = docs::utc(unix);
        let chosen: Vec<String> = match only {
            Some(a) => vec![a.to_owned()],
            None => resources.clone(),
        };
        let host = self.config.domain.clone();
        let single = !sub.list;
        let mut parts = Vec::new();
        let mut rl = Vec::new();
        for (i, uri) in chosen.iter().enumerate() {
            let view = self.ms_view(&sub.owner, uri);
            let instance = hex::encode(&vienna_crypto::hmac_sha256(b"ms-instance", &[uri.as_bytes()])[..6]);
            match view {
                Some(state) => {
                    let display = self.directory.display_name(uri);
                    let doc = match sub.format {
                        Format::Categories => docs::categories(uri, &state, display.as_deref(), &time),
                        Format::MsrtcPidf => docs::msrtc_pidf(uri, &state, display.as_deref()),
                    };
                    let cid = format!("{instance}.{}.{i}@{host}", sub.version);
                    rl.push((uri.clone(), instance, Some(cid.clone())));
                    parts.push((cid, doc));
                }
                None => rl.push((uri.clone(), instance, None)),
            }
        }
        let ctype_part = match sub.format {
            Format::Categories => docs::CATEGORIES,
            Format::MsrtcPidf => docs::MSRTC_PIDF,
        };
        let body = if single {
            parts.into_iter().next().map(|(_, doc)| (ctype_part.to_owned(), doc.into_bytes()))
        } else {
            let resources: Vec<vienna_presence::documents::Resource<'_>> = rl
                .iter()
                .map(|(uri, instance, cid)| vienna_presence::documents::Resource {
                    uri,
                    instance: instance.clone(),
                    state: match cid {
                        Some(c) => vienna_presence::documents::InstanceState::Active(c.clone()),
                        None => vienna_presence::documents::InstanceState::Pending,
                    },
                })
                .collect();
            let rlmi =
                vienna_presence::documents::rlmi(&sub.dialog.local_uri(), sub.version, only.is_none(), &resources);
            let parts: Vec<(String, &str, String)> = parts.into_iter().map(|(c, d)| (c, ctype_part, d)).collect();
            let boundary = hex::encode(
                &vienna_crypto::hmac_sha256(b"ms-boundary", &[&unix.to_be_bytes(), &sid.to_be_bytes()])[..8],
            );
            let root = format!("rlmi.{}.{sid}@{host}", sub.version);
            let (b, ctype) = docs::multipart(&boundary, &root, &rlmi, &parts);
            Some((ctype, b))
        };
        if let Some(sub) = self.ms.subs.get_mut(&sid) {
            sub.version += 1;
        }
        if let Some(body) = body {
            self.ms_notify(now, sid, Some(body));
        }
    }

    /// Sends a notification in subscription `sid` (BENOTIFY when negotiated).
    fn ms_notify(&mut self, now: Instant, sid: u64, body: Option<(String, Vec<u8>)>) {
        let Some(sub) = self.ms.subs.get_mut(&sid) else { return };
        sub.dialog.cseq += 1;
        let remaining = sub.expires_at.saturating_duration_since(now).as_secs();
        let dialog = sub.dialog.clone();
        let benotify = sub.benotify;
        let list = matches!(&sub.kind, SubKind::Presence(_))
            && body.as_ref().is_some_and(|(c, _)| c.starts_with("multipart/"));
        let mut extra = vec![(HeaderName::SubscriptionState, format!("active;expires={remaining}"))];
        if list {
            extra.push((HeaderName::Require, "eventlist".into()));
        }
        let bytes = match body {
            Some((ctype, b)) => {
                extra.push((HeaderName::ContentType, ctype));
                b
            }
            None => Vec::new(),
        };
        self.ms_send_on(now, &dialog, benotify, extra, bytes);
    }

    /// Sends a NOTIFY (in a client transaction) or a BENOTIFY (no transaction, never answered) in `dialog`.
    fn ms_send_on(
        &mut self,
        now: Instant,
        dialog: &MsDialog,
        benotify: bool,
        extra: Vec<(HeaderName, String)>,
        body: Vec<u8>,
    ) {
        let method = if benotify { Method::Other("BENOTIFY".into()) } else { Method::Notify };
        let mut request = Request::new(method.clone(), dialog.remote_target.clone());
        let branch = self.layer.new_branch();
        let Some(via) = self.config.via(dialog.peer.transport, &branch) else {
            self.counters.send_errors += 1;
            return;
        };
        let h = &mut request.headers;
        h.push(HeaderName::Via, via);
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, format!("{};tag={}", dialog.local, dialog.local_tag));
        h.push(HeaderName::To, dialog.remote.clone());
        h.push(HeaderName::CallId, dialog.call_id.clone());
        h.push(HeaderName::CSeq, format!("{} {}", dialog.cseq, method.as_str()));
        h.push(HeaderName::Contact, dialog.contact.clone());
        h.push(HeaderName::Event, dialog.event.clone());
        for (n, v) in extra {
            h.push(n, v);
        }
        request.body = body;
        if benotify {
            self.ms.counters.benotifies += 1;
            self.layer.send_stateless(&Message::Request(request), dialog.peer);
        } else {
            self.ms.counters.notifies += 1;
            if self.layer.send_request(now, request, dialog.peer).is_err() {
                self.counters.send_errors += 1;
            }
        }
    }

    // ----- SERVICE ---------------------------------------------------------------------------------------

    fn ms_service(&mut self, now: Instant, id: TransactionId, req: &Request) -> bool {
        let ctype = mime(req.headers.get(&HeaderName::ContentType));
        let known = [
            service::CATEGORY_PUBLISH,
            service::SET_CONTAINER_MEMBERS,
            service::SET_SUBSCRIBER,
            &service::SOAP.to_ascii_lowercase(),
        ]
        .contains(&ctype.as_str());
        if !known {
            return false;
        }
        let Some(owner) = self.local_user(req) else { return false };
        let unix = self.clock.unix(now);
        let Some(sender) = self.authenticate_sender(now, id, req, unix) else { return true };
        if sender != owner {
            self.reply(now, id, req, 403, Some("Forbidden (users change only their own data)"), |_| {});
            return true;
        }
        if req.body.len() > service::MAX_BODY {
            self.ms.counters.bad_bodies += 1;
            tracing::info!(owner = %owner, bytes = req.body.len(), "ms: oversized SERVICE body refused");
            self.reply(now, id, req, 413, None, |_| {});
            return true;
        }
        let peer = self.layer_peer(id);
        match ctype.as_str() {
            service::CATEGORY_PUBLISH => self.ms_publish(now, id, req, &owner, peer),
            service::SET_CONTAINER_MEMBERS => self.ms_containers(now, id, req, &owner),
            service::SET_SUBSCRIBER => match service::parse_set_subscribers(&req.body) {
                Ok(list) => {
                    let u = self.ms.users.entry(owner.clone()).or_default();
                    for (user, ack) in list {
                        let user = docs::no_sip(&user).to_owned();
                        if ack && u.acknowledged.len() < MAX_ACKNOWLEDGED {
                            u.acknowledged.insert(user);
                        } else {
                            u.acknowledged.remove(&user);
                        }
                    }
                    self.reply(now, id, req, 200, None, |_| {});
                    self.ms_notify_self(now, &owner);
                }
                Err(e) => self.ms_bad_body(now, id, req, &e),
            },
            _ => self.ms_soap(now, id, req, &owner),
        }
        true
    }

    pub(super) fn layer_peer(&self, id: TransactionId) -> Option<Peer> {
        let req = self.layer.request(id)?;
        let via = req.headers.top_via().ok()?;
        let transport = vienna_sip::Transport::from_via(&via.transport)?;
        let host = via.received().unwrap_or(via.host.as_str()).trim_start_matches('[').trim_end_matches(']');
        let ip = host.parse().ok()?;
        let port = via.rport().flatten().or(via.port)?;
        Some(Peer { transport, addr: std::net::SocketAddr::new(ip, port) })
    }

    fn ms_bad_body(&mut self, now: Instant, id: TransactionId, req: &Request, e: &service::BodyError) {
        self.ms.counters.bad_bodies += 1;
        tracing::info!(error = %e, "ms: malformed SERVICE body refused");
        let reason = format!("Bad Request ({e})");
        self.reply(now, id, req, 400, Some(&reason), |_| {});
    }

    /// Category publication (MS-PRES §3.7.5.2): every publication's version must be the one held (409 with
    /// a fault otherwise, nothing applied); then each is stored with the next version, `state` and `note`
    /// reach the presence model, and the 200 OK carries the self view.
    fn ms_publish(&mut self, now: Instant, id: TransactionId, req: &Request, owner: &str, peer: Option<Peer>) {
        let (_, pubs) = match service::parse_publish(&req.body) {
            Ok(p) => p,
            Err(e) => return self.ms_bad_body(now, id, req, &e),
        };
        let user = self.ms.users.entry(owner.to_owned()).or_default();
        let conflicts: Vec<(usize, u32)> = pubs
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let held = user.instances.get(&(p.name.clone(), p.instance, p.container)).map(|(c, _)| c.version);
                match held {
                    Some(v) if v != p.version => Some((i + 1, v)),
                    _ => None,
                }
            })
            .collect();
        if !conflicts.is_empty() {
            self.ms.counters.version_conflicts += 1;
            let body = docs::version_fault(&conflicts).into_bytes();
            return self.reply(now, id, req, 409, None, |r| {
                r.headers.push(HeaderName::ContentType, docs::FAULT);
                r.body = body;
            });
        }
        let new = pubs
            .iter()
            .filter(|p| !p.remove && !user.instances.contains_key(&(p.name.clone(), p.instance, p.container)))
            .count();
        if user.instances.len() + new > MAX_INSTANCES {
            return self.reply(now, id, req, 403, Some("Forbidden (too many category instances)"), |_| {});
        }
        let time = docs::utc(self.clock.unix(now));
        for p in &pubs {
            let key = (p.name.clone(), p.instance, p.container);
            if p.remove {
                user.instances.remove(&key);
            } else {
                let version = user.instances.get(&key).map_or(p.version, |(c, _)| c.version) + 1;
                let cat = docs::Category {
                    name: p.name.clone(),
                    instance: p.instance,
                    container: p.container,
                    version,
                    expire_type: p.expire_type.clone(),
                    publish_time: time.clone(),
                    value: p.value.clone(),
                };
                user.instances.insert(key, (cat, peer));
            }
            // What the presence model hears: states of the self containers, and the note.
            match p.name.as_str() {
                "state" if matches!(p.container, 2 | 3) => {
                    let Some(s) = &p.state else {
                        if p.remove {
                            user.manual = None;
                        }
                        continue;
                    };
                    match (s.kind.as_str(), s.availability) {
                        ("userState", Some(a)) => user.manual = Some((a, s.activity.clone())),
                        ("userState", None) => user.manual = None,
                        ("machineState", Some(a)) => {
                            if let Some(peer) = peer {
                                user.machine.insert(peer, a);
                            }
                        }
                        _ => {}
                    }
                }
                "state" if p.remove && matches!(p.container, 2 | 3) => user.manual = None,
                "note" if matches!(p.container, 200 | 300 | 400) => {
                    user.note = if p.remove { None } else { p.note.clone() }
                }
                _ => {}
            }
        }
        self.ms.counters.publications += pubs.len() as u64;
        self.ms_sync_presence(now, owner);
        let body = self.ms_self_view(owner).into_bytes();
        self.reply(now, id, req, 200, None, |r| {
            r.headers.push(HeaderName::ContentType, docs::ROAMING_SELF);
            r.body = body;
        });
        self.ms_notify_self(now, owner);
    }

    /// Hands `owner`'s category state to the presence model.
    fn ms_sync_presence(&mut self, now: Instant, owner: &str) {
        let state = self.ms.users.get(owner).and_then(|u| u.presence());
        let key = format!("ms:{owner}");
        self.presence.publish_state(now, owner, &key, state, CATEGORY_TTL);
        self.drain_presence(now);
    }

    /// Container membership (MS-PRES §3.7.5.5): versions checked like publications; user, domain,
    /// same-enterprise and everyone members become access control entries of the store (32000 blocks,
    /// every other container allows).
    fn ms_containers(&mut self, now: Instant, id: TransactionId, req: &Request, owner: &str) {
        let changes = match service::parse_container_members(&req.body) {
            Ok(c) => c,
            Err(e) => return self.ms_bad_body(now, id, req, &e),
        };
        let user = self.ms.users.entry(owner.to_owned()).or_default();
        let conflicts: Vec<(usize, u32)> = changes
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                user.containers.get(&c.id).filter(|h| h.version != c.version).map(|h| (i + 1, h.version))
            })
            .collect();
        if !conflicts.is_empty() {
            self.ms.counters.version_conflicts += 1;
            let body = docs::version_fault(&conflicts).into_bytes();
            return self.reply(now, id, req, 409, None, |r| {
                r.headers.push(HeaderName::ContentType, docs::FAULT);
                r.body = body;
            });
        }
        let new = changes.iter().filter(|c| !user.containers.contains_key(&c.id)).count();
        if user.containers.len() + new > MAX_CONTAINERS
            || changes
                .iter()
                .any(|c| c.members.len() + user.containers.get(&c.id).map_or(0, |h| h.members.len()) > MAX_MEMBERS)
        {
            return self.reply(now, id, req, 403, Some("Forbidden (too many containers or members)"), |_| {});
        }
        let mut edits = Vec::new();
        for c in &changes {
            let held =
                user.containers.entry(c.id).or_insert_with(|| docs::Container { id: c.id, ..Default::default() });
            held.version = c.version + 1;
            for (action, kind, value) in &c.members {
                let member = (kind.clone(), value.clone());
                let add = action.eq_ignore_ascii_case("add");
                if add {
                    if !held.members.contains(&member) {
                        held.members.push(member);
                    }
                } else {
                    held.members.retain(|m| *m != member);
                }
                let scope = match (kind.as_str(), value) {
                    ("user", Some(v)) => AceScope::User(format!("sip:{}", docs::no_sip(v))),
                    ("domain", Some(v)) => AceScope::Domain(v.clone()),
                    ("sameEnterprise", _) => AceScope::Domain(self.config.domain.clone()),
                    ("everyone", _) => AceScope::Everyone,
                    _ => continue,
                };
                let level = if c.id == 32000 { AccessLevel::Block } else { AccessLevel::Allow };
                edits.push(if add { ContactEdit::PutAce(Ace { scope, level }) } else { ContactEdit::RemoveAce(scope) });
            }
        }
        for e in &edits {
            if let Err(err) = self.directory.edit_contacts(owner, e) {
                tracing::warn!(owner = %owner, error = %err, "ms: access control entry not stored");
            }
        }
        self.ms.counters.edits += edits.len() as u64;
        self.reply(now, id, req, 200, None, |_| {});
        self.ms_notify_self(now, owner);
        self.ms_refresh_watchers(now, owner);
    }

    /// Category subscribers of `owner` see it again under the current authorization.
    fn ms_refresh_watchers(&mut self, now: Instant, owner: &str) {
        for sid in self.ms.watching(owner) {
            self.ms_notify_presence(now, sid, Some(owner));
        }
    }

    /// The SOAP operations of MS-SIP §3.7 on the roaming contact list and ACL.
    fn ms_soap(&mut self, now: Instant, id: TransactionId, req: &Request, owner: &str) {
        let (op, _delta) = match service::parse_soap(&req.body) {
            Ok(o) => o,
            Err(e) => return self.ms_bad_body(now, id, req, &e),
        };
        let sip = |u: &str| if u.contains(':') { u.to_owned() } else { format!("sip:{u}") };
        let edit = match &op {
            SoapOp::SetContact { uri, display_name, groups, subscribed } => ContactEdit::PutContact(ContactEntry {
                uri: sip(uri),
                display_name: display_name.clone(),
                groups: groups.clone(),
                subscribed: *subscribed,
            }),
            SoapOp::DeleteContact { uri } => ContactEdit::RemoveContact(sip(uri)),
            SoapOp::AddGroup { name } => ContactEdit::AddGroup(name.clone()),
            SoapOp::ModifyGroup { id, name } => ContactEdit::RenameGroup(*id, name.clone()),
            SoapOp::DeleteGroup { id } => ContactEdit::RemoveGroup(*id),
            SoapOp::SetAce { kind, mask, allow } => {
                let scope = match kind.to_ascii_uppercase().as_str() {
                    "USER" => AceScope::User(sip(mask)),
                    "DOMAIN" => AceScope::Domain(mask.clone()),
                    _ => AceScope::Everyone,
                };
                let level = if *allow { AccessLevel::Allow } else { AccessLevel::Block };
                ContactEdit::PutAce(Ace { scope, level })
            }
            SoapOp::SetPresence { availability, activity, user_avail, note } => {
                let a = user_avail.unwrap_or_else(|| legacy_to_availability(*availability, *activity));
                let user = self.ms.users.entry(owner.to_owned()).or_default();
                user.manual = Some((a, None));
                user.note = note.clone();
                self.ms.counters.publications += 1;
                self.ms_sync_presence(now, owner);
                self.reply(now, id, req, 200, None, |_| {});
                return;
            }
        };
        match self.directory.edit_contacts(owner, &edit) {
            Ok((_, group)) => {
                self.ms.counters.edits += 1;
                let body = match (&op, group) {
                    (SoapOp::AddGroup { .. }, Some(g)) => {
                        Some(docs::soap_response("addGroup", &[("groupID", g.to_string())]))
                    }
                    _ => None,
                };
                self.reply(now, id, req, 200, None, |r| {
                    if let Some(b) = body {
                        r.headers.push(HeaderName::ContentType, service::SOAP);
                        r.body = b.into_bytes();
                    }
                });
                self.ms_notify_contacts(now, owner);
                if matches!(op, SoapOp::SetAce { .. }) {
                    self.ms_refresh_watchers(now, owner);
                }
            }
            Err(e) => {
                tracing::info!(owner = %owner, error = %e, "ms: contact list operation refused");
                let reason = format!("Bad Request ({e})");
                self.reply(now, id, req, 400, Some(&reason), |_| {});
            }
        }
    }
}

/// The 2007 availability of an LCS 2005 aggregate (availability, activity) (MS-SIP §2.2.1 ranges).
fn legacy_to_availability(availability: u32, activity: u32) -> u32 {
    if availability < 100 {
        return vienna_presence::availability::OFFLINE;
    }
    match activity {
        0..=149 => vienna_presence::availability::AWAY,
        150..=199 => vienna_presence::availability::AWAY,
        200..=299 => vienna_presence::availability::ONLINE_IDLE,
        300..=399 => vienna_presence::availability::BE_RIGHT_BACK,
        400..=499 => vienna_presence::availability::ONLINE,
        500..=699 => vienna_presence::availability::BUSY,
        700..=799 => vienna_presence::availability::AWAY,
        _ => vienna_presence::availability::ONLINE,
    }
}

fn first_contact(req: &Request) -> Option<vienna_sip::Uri> {
    match req.headers.contacts() {
        Ok(vienna_sip::Contacts::List(l)) => l.into_iter().next().map(|c| c.uri),
        _ => None,
    }
}

impl MsDialog {
    /// The list URI of our notifications (the subscriber's own address for batched subscriptions).
    fn local_uri(&self) -> String {
        vienna_sip::NameAddr::parse(&self.local).map(|n| n.uri.to_string()).unwrap_or_else(|_| self.local.clone())
    }
}
