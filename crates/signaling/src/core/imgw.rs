//! The core's side of the IM-session gateway ([`crate::msclient::im_gateway`]): taking over an IM-only
//! INVITE that every contact of the callee refused (488, 415 or 606), turning its first message and every
//! MESSAGE of its dialog into page-mode MESSAGEs (RFC 3428) to the callee's contacts, answering BYE, and
//! ending sessions that fell idle or whose 2xx was never acknowledged.
//!
//! Each message is answered with the callee's outcome (the first 2xx of its contacts, else the best
//! failure), as a proxy would answer a page-mode MESSAGE: the caller shows "not delivered" when nobody took
//! it, instead of the gateway claiming success. The first message rides in the INVITE, so the INVITE
//! waits for its delivery: 200 OK (the session opens) when a contact took it, the failure otherwise; a
//! CANCEL meanwhile answers it 487 at once (the message, already sent, is not recalled).
//!
//! The caller is taken to be a Microsoft client of this server: in-dialog requests are accepted only from
//! the connection (or address) the INVITE came from, and it is trusted as the sender (From) of what the
//! gateway delivers, as the INVITE was authenticated.

use std::time::{Duration, Instant};

use vienna_sip::transaction::{Peer, TransactionEvent, TransactionId};
use vienna_sip::{HeaderName, Method, Request, Response, Uri};

use super::Core;
use crate::directory::Directory;
use crate::msclient::im_gateway::{
    self as gw, CONTACT_PARAM, Delivery, Session, SessionKey, TEXT_PLAIN, Unacked, Waiting,
};

/// How often idle sessions are looked for.
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// Methods of a gateway dialog, for Allow.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, MESSAGE, INFO, OPTIONS";

fn ms_text_format() -> HeaderName {
    HeaderName::Other("ms-text-format".into())
}

fn contact_uri(req: &Request) -> Option<Uri> {
    match req.headers.contacts() {
        Ok(vienna_sip::Contacts::List(l)) => l.into_iter().next().map(|c| c.uri),
        _ => None,
    }
}

impl<D: Directory> Core<D> {
    fn imgw_enabled(&self) -> bool {
        self.config.ms.enabled && self.config.ms.im_gateway.enabled
    }

    /// Whether a fork of `req` is one the gateway may take when it fails: an out-of-dialog INVITE offering
    /// only an IM session.
    pub(super) fn imgw_candidate(&self, req: &Request) -> bool {
        self.imgw_enabled()
            && req.method == Method::Invite
            && req.headers.to().ok().is_some_and(|t| t.tag().is_none())
            && gw::is_im_offer(req.headers.get(&HeaderName::ContentType), &req.body)
    }

    /// Every branch of the IM-only INVITE `request` (server transaction `server`) failed and `best` would
    /// go upstream. The gateway takes the session when `best` is 488, 415 or 606 and there is room:
    /// `None` then (the INVITE is answered later); otherwise `Some(best)` to send as before.
    pub(super) fn imgw_take(
        &mut self,
        now: Instant,
        server: TransactionId,
        request: &Request,
        best: Response,
    ) -> Option<Response> {
        if !matches!(best.status, 415 | 488 | 606) {
            return Some(best);
        }
        let call_id = request.headers.call_id().unwrap_or_default().to_owned();
        if !self.ms.imgw.has_room() {
            self.ms.imgw.counters.sessions_refused_full += 1;
            tracing::warn!(call_id = %call_id, "imgw: session table full, the refusal goes to the caller");
            return Some(best);
        }
        let (Some(peer), Ok(from), Some(callee)) =
            (self.layer_peer(server), request.headers.from(), request.uri.as_sip().map(|u| self.callee_aor(u)))
        else {
            return Some(best);
        };
        let Some(caller) = from.uri.as_sip().map(|u| self.config.aor_of(u)) else { return Some(best) };
        // The addresses go into header values of the page-mode MESSAGEs (unescaped user parts: no control
        // characters, no angle brackets).
        let plain = |aor: &str| !aor.chars().any(|c| c.is_control() || c == '<' || c == '>');
        if !plain(&caller)
            || !plain(&callee)
            || from.tag().is_none()
            || contact_uri(request).is_none()
            || self.config.contact(peer.transport).is_none()
        {
            return Some(best);
        }
        let tag = self.layer.new_tag();
        let first = request.headers.get(&ms_text_format()).and_then(gw::first_message);
        tracing::info!(
            caller = %caller, callee = %callee, call_id = %call_id, refused = best.status,
            first_message = first.is_some(), "imgw: the callee refused an IM session, the gateway takes it"
        );
        let Some(text) = first else {
            self.imgw_open(now, server, request, &tag, caller, callee, peer, false);
            return None;
        };
        let waiting = Waiting::Invite {
            server,
            request: Box::new(request.clone()),
            tag,
            caller: caller.clone(),
            callee: callee.clone(),
            peer,
        };
        match self.imgw_deliver(now, &caller, &callee, text.into_bytes(), waiting) {
            Ok(()) => None,
            Err(_) => Some(best),
        }
    }

    /// The address of record a Request-URI names (a GRUU names its user's).
    fn callee_aor(&self, uri: &vienna_sip::SipUri) -> String {
        match self.gruu_target(uri) {
            Some(Ok((aor, _))) => aor,
            _ => self.config.aor_of(uri),
        }
    }

    /// Answers the INVITE 200 OK and opens the session.
    #[allow(clippy::too_many_arguments)]
    fn imgw_open(
        &mut self,
        now: Instant,
        server: TransactionId,
        req: &Request,
        tag: &str,
        caller: String,
        callee: String,
        peer: Peer,
        took_first: bool,
    ) {
        let (Some(contact), Some(listener), Some(remote_target), Ok(to), Some(remote)) = (
            self.config.contact(peer.transport),
            self.config.listener(peer.transport),
            contact_uri(req),
            req.headers.to(),
            req.headers.get(&HeaderName::From).map(str::to_owned),
        ) else {
            return self.reply(now, server, req, 500, Some("Server Internal Error (IM gateway)"), |_| {});
        };
        let contact = format!("{};{CONTACT_PARAM}>", contact.trim_end_matches('>'));
        let legacy = String::from_utf8_lossy(&req.body).contains("m=x-ms-message");
        let sdp = gw::sdp_answer(listener.addr, &callee, legacy);
        let mut r = req.make_response_with_tag(200, None, tag);
        for rr in req.headers.get_all(&HeaderName::RecordRoute) {
            r.headers.push(HeaderName::RecordRoute, rr.to_owned());
        }
        r.headers.push(HeaderName::Contact, contact);
        r.headers.push(HeaderName::Allow, ALLOW);
        if took_first {
            r.headers.push(HeaderName::Supported, "ms-text-format");
        }
        r.headers.push(HeaderName::Server, self.config.server_name.clone());
        r.headers.push(HeaderName::ContentType, "application/sdp");
        r.body = sdp.into_bytes();
        let mut local = to;
        local.params.set("tag", Some(tag.to_owned()));
        let key: SessionKey = (req.headers.call_id().unwrap_or_default().to_owned(), tag.to_owned());
        let route = req.headers.get_all(&HeaderName::RecordRoute).map(str::to_owned).collect();
        tracing::info!(caller = %caller, callee = %callee, call_id = %key.0, "imgw: IM session open");
        let g = &mut self.ms.imgw;
        g.counters.sessions += 1;
        g.sessions.insert(
            key.clone(),
            Session {
                caller,
                callee,
                local: local.to_string(),
                remote,
                remote_target,
                route,
                peer,
                cseq: 0,
                last_active: now,
            },
        );
        if !peer.transport.is_reliable() {
            let t1 = self.config.timers.t1;
            g.unacked.insert(
                key,
                Unacked { tx: server, response: r.clone(), at: now + t1, interval: t1, give_up: now + 64 * t1 },
            );
        }
        self.respond(now, server, r);
    }

    /// Sends `text` from `caller` to every contact of `callee` as a page-mode MESSAGE; `waiting` gets the
    /// outcome. `Err(status)` when nothing could be sent (480: no contact).
    fn imgw_deliver(
        &mut self,
        now: Instant,
        caller: &str,
        callee: &str,
        text: Vec<u8>,
        waiting: Waiting,
    ) -> Result<(), u16> {
        let unix = self.clock.unix(now);
        let targets = self.user_targets(callee, None, unix);
        if targets.is_empty() {
            tracing::info!(callee = %callee, "imgw: the callee has no contact, message not delivered");
            return Err(480);
        }
        let call_id = format!("{}@{}", self.layer.new_tag(), self.config.domain);
        let from_tag = self.layer.new_tag();
        let id = self.ms.imgw.next;
        self.ms.imgw.next += 1;
        let mut sent = 0;
        for target in targets {
            let branch = self.layer.new_branch();
            let Some(via) = self.config.via(target.peer.transport, &branch) else { continue };
            let mut m = Request::new(Method::Message, target.uri);
            let h = &mut m.headers;
            h.push(HeaderName::Via, via);
            h.push(HeaderName::MaxForwards, "70");
            h.push(HeaderName::From, format!("<{caller}>;tag={from_tag}"));
            h.push(HeaderName::To, format!("<{callee}>"));
            h.push(HeaderName::CallId, call_id.clone());
            h.push(HeaderName::CSeq, "1 MESSAGE");
            h.push(HeaderName::UserAgent, self.config.server_name.clone());
            h.push(HeaderName::ContentType, TEXT_PLAIN);
            m.body = text.clone();
            match self.layer.send_request(now, m, target.peer) {
                Ok(tx) => {
                    self.ms.imgw.branches.insert(tx, id);
                    sent += 1;
                }
                Err(_) => self.counters.send_errors += 1,
            }
        }
        if sent == 0 {
            return Err(500);
        }
        self.ms.imgw.deliveries.insert(id, Delivery { waiting, pending: sent, best: None });
        Ok(())
    }

    /// The outcome of delivery `id` for whoever waits for it.
    fn imgw_outcome(&mut self, now: Instant, id: u64, result: Result<(), u16>) {
        let Some(d) = self.ms.imgw.deliveries.remove(&id) else { return };
        match result {
            Ok(()) => self.ms.imgw.counters.delivered += 1,
            Err(status) => {
                self.ms.imgw.counters.delivery_failures += 1;
                tracing::info!(status, "imgw: no contact of the callee took the message");
            }
        }
        match (d.waiting, result) {
            (Waiting::Invite { server, request, tag, caller, callee, peer }, Ok(())) => {
                self.imgw_open(now, server, &request, &tag, caller, callee, peer, true);
            }
            (Waiting::Invite { server, request, tag, .. }, Err(status)) => {
                let mut r = request.make_response_with_tag(status, None, &tag);
                r.headers.push(HeaderName::Server, self.config.server_name.clone());
                self.respond(now, server, r);
            }
            (Waiting::Cancelled, _) => {}
            (Waiting::Message { server, request }, Ok(())) => self.reply(now, server, &request, 200, None, |_| {}),
            (Waiting::Message { server, request }, Err(status)) => {
                self.reply(now, server, &request, status, None, |_| {})
            }
        }
    }

    /// A CANCEL of INVITE `invite`: when the gateway holds that INVITE until its first message is
    /// delivered, the INVITE is answered 487 now and the delivery's outcome is dropped. Returns whether it
    /// did.
    pub(super) fn imgw_cancel(&mut self, now: Instant, invite: TransactionId) -> bool {
        let Some(d) = self
            .ms
            .imgw
            .deliveries
            .values_mut()
            .find(|d| matches!(d.waiting, Waiting::Invite { server, .. } if server == invite))
        else {
            return false;
        };
        let Waiting::Invite { server, request, tag, .. } = std::mem::replace(&mut d.waiting, Waiting::Cancelled) else {
            return false;
        };
        tracing::info!(
            call_id = request.headers.call_id().unwrap_or_default(),
            "imgw: IM session cancelled by the caller before its first message was delivered"
        );
        let mut r = request.make_response_with_tag(487, None, &tag);
        r.headers.push(HeaderName::Server, self.config.server_name.clone());
        self.respond(now, server, r);
        true
    }

    /// Handles a transaction event of the gateway (the ACK of its 2xx, the outcome of a page-mode
    /// MESSAGE). Returns whether it did.
    pub(super) fn imgw_event(&mut self, now: Instant, event: &TransactionEvent) -> bool {
        let g = &mut self.ms.imgw;
        match event {
            TransactionEvent::Ack { request, .. } => {
                let Some(tag) = request.headers.to().ok().and_then(|t| t.tag().map(str::to_owned)) else {
                    return false;
                };
                let key = (request.headers.call_id().unwrap_or_default().to_owned(), tag);
                g.unacked.remove(&key);
                g.sessions.contains_key(&key)
            }
            TransactionEvent::Response { id, response } => {
                let Some(&d) = g.branches.get(id) else { return false };
                if response.status < 200 {
                    return true;
                }
                g.branches.remove(id);
                if response.status < 300 {
                    if let Some(delivery) = g.deliveries.get_mut(&d) {
                        delivery.pending = delivery.pending.saturating_sub(1);
                    }
                    self.imgw_outcome(now, d, Ok(()));
                } else if let Some(best) = g.branch_failed(d, response.status) {
                    self.imgw_outcome(now, d, Err(best));
                }
                true
            }
            TransactionEvent::Timeout { id, .. }
            | TransactionEvent::TransportError { id }
            | TransactionEvent::Terminated { id } => {
                let Some(d) = g.branches.remove(id) else { return false };
                let status = if matches!(event, TransactionEvent::TransportError { .. }) { 480 } else { 408 };
                if let Some(best) = g.branch_failed(d, status) {
                    self.imgw_outcome(now, d, Err(best));
                }
                true
            }
            _ => false,
        }
    }

    /// Takes a request in a gateway dialog; `false` when it is not one.
    pub(super) fn imgw_request(&mut self, now: Instant, id: TransactionId, req: &Request, peer: Peer) -> bool {
        if !self.imgw_enabled() {
            return false;
        }
        let Some(tag) = req.headers.to_tag() else { return false };
        let key = (req.headers.call_id().unwrap_or_default().to_owned(), tag);
        let to_gateway = req.uri.as_sip().is_some_and(|u| u.params.contains(CONTACT_PARAM));
        let g = &mut self.ms.imgw;
        let Some(s) = g.sessions.get_mut(&key) else {
            if to_gateway {
                g.counters.refused += 1;
                self.reply(now, id, req, 481, Some("Call/Transaction Does Not Exist (IM session ended)"), |_| {});
                return true;
            }
            return false;
        };
        if s.peer != peer {
            g.counters.refused += 1;
            tracing::info!(call_id = %key.0, "imgw: in-dialog request from another connection refused");
            self.reply(now, id, req, 403, Some("Forbidden (not the connection of this IM session)"), |_| {});
            return true;
        }
        s.last_active = now;
        match req.method {
            Method::Message => {
                let (caller, callee) = (s.caller.clone(), s.callee.clone());
                if !gw::deliverable(req.headers.get(&HeaderName::ContentType)) {
                    g.counters.refused += 1;
                    self.reply(now, id, req, 415, None, |r| r.headers.push(HeaderName::Accept, "text/plain"));
                } else if req.body.len() > gw::MAX_TEXT {
                    g.counters.refused += 1;
                    self.reply(now, id, req, 413, None, |_| {});
                } else {
                    let waiting = Waiting::Message { server: id, request: Box::new(req.clone()) };
                    if let Err(status) = self.imgw_deliver(now, &caller, &callee, req.body.clone(), waiting) {
                        self.ms.imgw.counters.delivery_failures += 1;
                        self.reply(now, id, req, status, None, |_| {});
                    }
                }
            }
            Method::Bye => {
                g.sessions.remove(&key);
                g.unacked.remove(&key);
                g.counters.byes += 1;
                tracing::info!(call_id = %key.0, "imgw: IM session ended by the caller");
                self.reply(now, id, req, 200, None, |_| {});
            }
            Method::Info | Method::Options => self.reply(now, id, req, 200, None, |_| {}),
            Method::Invite => {
                g.counters.refused += 1;
                self.reply(now, id, req, 488, Some("Not Acceptable Here (the IM gateway keeps its session)"), |_| {});
            }
            _ => {
                g.counters.refused += 1;
                self.reply(now, id, req, 405, None, |r| r.headers.push(HeaderName::Allow, ALLOW));
            }
        }
        true
    }

    /// When the gateway next needs [`Core::handle_timeout`] (2xx retransmissions, ACK deadlines; idle
    /// sessions are looked for on the core's periodic sweep).
    pub(super) fn imgw_poll_timeout(&self) -> Option<Instant> {
        self.ms.imgw.poll_timeout()
    }

    /// Retransmits unacknowledged 2xx (doubling up to T2), drops sessions whose ACK never came, ends idle
    /// sessions with a BYE.
    pub(super) fn imgw_timeout(&mut self, now: Instant) {
        let t2 = self.config.timers.t2;
        let g = &mut self.ms.imgw;
        let mut resend = Vec::new();
        let mut dead: Vec<SessionKey> = Vec::new();
        for (k, u) in g.unacked.iter_mut() {
            if now >= u.give_up {
                dead.push(k.clone());
            } else if u.at <= now {
                u.interval = (u.interval * 2).min(t2);
                u.at = now + u.interval;
                resend.push((u.tx, u.response.clone()));
            }
        }
        for k in &dead {
            g.unacked.remove(k);
            tracing::info!(call_id = %k.0, "imgw: 2xx never acknowledged, IM session dropped");
        }
        if g.next_idle_check.is_none_or(|t| t <= now) {
            g.next_idle_check = Some(now + IDLE_CHECK);
            let idle = g.config.idle;
            dead.extend(
                g.sessions
                    .iter()
                    .filter(|(_, s)| s.last_active.checked_add(idle).is_some_and(|t| t <= now))
                    .map(|(k, _)| k.clone()),
            );
        }
        for (tx, r) in resend {
            let _ = self.layer.send_response(now, tx, r);
        }
        for k in dead {
            if let Some(s) = self.ms.imgw.sessions.remove(&k) {
                self.ms.imgw.counters.expired += 1;
                tracing::info!(call_id = %k.0, caller = %s.caller, "imgw: IM session expired, BYE sent");
                self.imgw_bye(now, &k, s);
            }
        }
    }

    /// Sends a BYE in session `key` (which has left the table); its outcome is not awaited.
    fn imgw_bye(&mut self, now: Instant, key: &SessionKey, s: Session) {
        let mut request = Request::new(Method::Bye, s.remote_target.clone());
        let branch = self.layer.new_branch();
        let Some(via) = self.config.via(s.peer.transport, &branch) else { return };
        let h = &mut request.headers;
        h.push(HeaderName::Via, via);
        h.push(HeaderName::MaxForwards, "70");
        for r in &s.route {
            h.push(HeaderName::Route, r.clone());
        }
        h.push(HeaderName::From, s.local.clone());
        h.push(HeaderName::To, s.remote.clone());
        h.push(HeaderName::CallId, key.0.clone());
        h.push(HeaderName::CSeq, format!("{} BYE", s.cseq + 1));
        if self.layer.send_request(now, request, s.peer).is_err() {
            self.counters.send_errors += 1;
        }
    }
}
