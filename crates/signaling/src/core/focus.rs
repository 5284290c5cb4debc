//! The core's side of the conference focus (see [`crate::conference`] for what is served): requests to
//! conference URIs and in conference dialogs, roster NOTIFYs, BYEs, the 2xx retransmissions of the
//! INVITEs it answers, and the driver's MCU answers and events.

use std::time::{Duration, Instant};

use vienna_focus::c3p::{self, Command};
use vienna_focus::{ConfKind, ConfUri, Output as FocusOutput, Refusal};
use vienna_sip::transaction::{Peer, TransactionEvent, TransactionId};
use vienna_sip::{HeaderName, Method, Request, Uri};
use vienna_store::ConferenceRecord;

use super::{Core, Output};
use crate::conference::{
    C3P_TYPE, CONFERENCE_INFO_TYPE, ClientTx, ConferenceConfig, ConferenceCounters, ConferenceLookup, ConferenceOutput,
    ConferenceView, Dialog, DialogKey, DialogKind, MediaEvent, MediaJoined, MediaRefused, Pending, PendingJoin, State,
    Subscription, from_record, to_record,
};
use crate::directory::Directory;

/// Methods a conference URI answers, for Allow.
const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, INFO, SUBSCRIBE, SERVICE, OPTIONS";
/// How often conference lifetimes are checked.
const EXPIRY_EVERY: Duration = Duration::from_secs(5);

/// What a Request-URI names for the focus.
enum Target {
    /// A focus factory, focus or MCU of a conference that exists (or a focus factory).
    Conf(ConfUri),
    /// A standard client's dial-in URI of an existing conference (as its focus URI).
    DialIn(ConfUri),
    /// A conference URI of a conference that does not exist.
    Missing,
}

/// The first Contact of a request.
fn first_contact(req: &Request) -> Option<vienna_sip::NameAddr> {
    match req.headers.contacts().ok()? {
        vienna_sip::Contacts::List(l) => l.into_iter().next(),
        vienna_sip::Contacts::Wildcard => None,
    }
}

fn content_type(req: &Request) -> Option<String> {
    req.headers.get(&HeaderName::ContentType).map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

/// The SIP answer to an addUser or media join the focus refused.
fn refusal_status(r: Refusal) -> (u16, &'static str) {
    match r {
        Refusal::NoConference => (404, "Not Found (no such conference)"),
        Refusal::NoUser => (404, "Not Found (no such user in the conference)"),
        Refusal::Unauthorized => (403, "Forbidden (not allowed in this conference)"),
        Refusal::Locked => (403, "Forbidden (conference locked)"),
        Refusal::Full => (486, "Busy Here (conference full)"),
        Refusal::Exists | Refusal::Unsupported | Refusal::Other => (400, "Bad Request (C3P command refused)"),
    }
}

impl<D: Directory> Core<D> {
    /// Turns the conference focus on (see [`crate::conference`]); `secret` (random) keys new conference
    /// ids, `lookup` finds conferences in the store the focus does not hold yet.
    pub fn enable_conferences(&mut self, config: ConferenceConfig, secret: [u8; 32], lookup: Option<ConferenceLookup>) {
        let mut state = State::new(config, secret);
        state.lookup = lookup;
        self.conference = Some(Box::new(state));
    }

    /// Gives the focus a stored conference (at start).
    pub fn restore_conference(&mut self, record: &ConferenceRecord) {
        if let Some(st) = self.conference.as_mut() {
            st.focus.restore(from_record(record));
        }
    }

    /// The focus's conferences, for the admin API (empty when it is off).
    pub fn conference_views(&self) -> Vec<ConferenceView> {
        self.conference.as_ref().map(|s| s.views()).unwrap_or_default()
    }

    /// The focus's counters (zero when it is off).
    pub fn conference_counters(&self) -> ConferenceCounters {
        self.conference.as_ref().map(|s| s.counters).unwrap_or_default()
    }

    /// The MCU's answer to [`ConferenceOutput::Join`] `token`.
    pub fn media_answer(&mut self, now: Instant, token: u64, result: Result<MediaJoined, MediaRefused>) {
        let unix = self.clock.unix(now);
        let Some(st) = self.conference.as_mut() else { return };
        let Some(p) = st.pending.remove(&token) else { return };
        let joined = match result {
            Ok(j) if p.cancelled => {
                self.out.push_back(Output::Conference(ConferenceOutput::Leave {
                    conference: p.conference.clone(),
                    participant: j.participant,
                }));
                return;
            }
            Ok(j) => j,
            Err(_) if p.cancelled => return,
            Err(MediaRefused::NotAcceptable(why)) => {
                st.counters.media_refused += 1;
                let reason = format!("Not Acceptable Here ({why})");
                self.reply_tagged(now, p.server, &p.request, 488, &reason, &p.local_tag);
                return self.pump(now);
            }
            Err(MediaRefused::Unavailable(why)) => {
                st.counters.media_refused += 1;
                let reason = format!("Service Unavailable ({why})");
                self.reply_tagged(now, p.server, &p.request, 503, &reason, &p.local_tag);
                return self.pump(now);
            }
        };
        let call_id = p.request.headers.call_id().unwrap_or_default().to_owned();
        if let Err(r) = st.focus.media_joined(unix, &p.conference, &p.user, &p.display, &call_id, joined.ssrc) {
            self.out.push_back(Output::Conference(ConferenceOutput::Leave {
                conference: p.conference.clone(),
                participant: joined.participant,
            }));
            let (status, reason) = refusal_status(r);
            self.reply_tagged(now, p.server, &p.request, status, reason, &p.local_tag);
            return self.pump(now);
        }
        st.counters.media_joins += 1;
        let Some(dialog) =
            self.new_dialog(now, &p.request, p.kind, &p.conference, &p.user, &p.local_tag, p.peer, &p.contact)
        else {
            return self.pump(now);
        };
        let key = (dialog.call_id.clone(), dialog.local_tag.clone());
        let mut dialog = dialog;
        dialog.participant = Some(joined.participant.clone());
        dialog.answer = Some(joined.answer.clone());
        if let Some(st) = self.conference.as_mut() {
            st.media.insert((p.conference.clone(), joined.participant.clone()), key.clone());
            st.dialogs.insert(key.clone(), dialog);
        }
        self.answer_invite(now, p.server, &p.request, &key, Some(("application/sdp", joined.answer.into_bytes())));
        self.conference_outputs(now);
        self.pump(now);
    }

    /// Something the MCU reported.
    pub fn media_event(&mut self, now: Instant, event: MediaEvent) {
        let Some(st) = self.conference.as_mut() else { return };
        match event {
            MediaEvent::Source { conference, participant, ssrc } => {
                if let Some(user) = st.user_of(&conference, &participant).map(str::to_owned) {
                    let _ = st.focus.set_src_id(&conference, &user, ssrc);
                }
            }
            MediaEvent::Muted { conference, participant, muted } => {
                if let Some(user) = st.user_of(&conference, &participant).map(str::to_owned)
                    && st.focus.is_muted(&conference, &user) != Some(muted)
                {
                    let _ = st.focus.set_muted(&conference, &user, muted);
                }
            }
            MediaEvent::Dominant { conference, participant } => {
                let user = participant.and_then(|p| st.user_of(&conference, &p).map(str::to_owned));
                let _ = st.focus.set_dominant(&conference, user.as_deref());
            }
            MediaEvent::Left { conference, participant } => {
                let Some(key) = st.media.remove(&(conference.clone(), participant)) else { return };
                let Some(dialog) = st.dialogs.remove(&key) else { return };
                st.counters.media_timeouts += 1;
                let _ = st.focus.media_left(&conference, &dialog.user);
                self.send_bye(now, dialog);
            }
        }
        self.conference_outputs(now);
        self.pump(now);
    }

    /// Takes a request for the focus: an in-dialog request of one of its dialogs or subscriptions, or one
    /// to a conference URI. Returns whether it was taken (and answered).
    pub(super) fn conference_request(&mut self, now: Instant, id: TransactionId, req: &Request, peer: Peer) -> bool {
        if self.conference.is_none() {
            return false;
        }
        let to_tag = req.headers.to_tag();
        if let Some(tag) = to_tag {
            let key: DialogKey = (req.headers.call_id().unwrap_or_default().to_owned(), tag);
            let Some(st) = self.conference.as_ref() else { return false };
            if st.dialogs.contains_key(&key) {
                self.in_dialog(now, id, req, key);
                return true;
            }
            if st.subs.contains_key(&key) {
                if req.method == Method::Subscribe {
                    self.resubscribe(now, id, req, key);
                } else {
                    self.reply(now, id, req, 405, None, |r| r.headers.push(HeaderName::Allow, "SUBSCRIBE"));
                }
                return true;
            }
            if self.names_conference(req) {
                // A dialog this server no longer has (it restarted): 481 tells the client to start over.
                self.reply(
                    now,
                    id,
                    req,
                    481,
                    Some("Call/Transaction Does Not Exist (no such conference dialog)"),
                    |_| {},
                );
                return true;
            }
            return false;
        }
        let Some(target) = self.conference_target(now, &req.uri) else { return false };
        match target {
            Target::Missing => self.reply(now, id, req, 404, Some("Not Found (no such conference)"), |_| {}),
            Target::Conf(uri) if uri.kind == ConfKind::FocusFactory => self.factory_request(now, id, req, &uri),
            Target::Conf(uri) => match uri.kind {
                ConfKind::Focus | ConfKind::AudioVideo => {
                    self.conference_target_request(now, id, req, peer, &uri, false)
                }
                _ => self.reply(now, id, req, 404, Some("Not Found (this server has no IM or sharing MCU)"), |_| {}),
            },
            Target::DialIn(uri) => self.conference_target_request(now, id, req, peer, &uri, true),
        }
        true
    }

    /// Whether a request names a conference URI (without looking conferences up).
    fn names_conference(&self, req: &Request) -> bool {
        let Some(sip) = req.uri.as_sip() else { return false };
        if sip.params.contains("opaque") && ConfUri::parse(&req.uri.to_string()).is_some() {
            return true;
        }
        let dial_in = self.conference.as_ref().and_then(|s| s.focus.config().dial_in.clone());
        dial_in.zip(sip.user_unescaped()).is_some_and(|(d, u)| d.id_of(&u).is_some())
    }

    /// What a Request-URI of the local domain names, if anything for the focus.
    fn conference_target(&mut self, now: Instant, uri: &Uri) -> Option<Target> {
        let sip = uri.as_sip()?;
        if !self.config.is_local_domain(sip) {
            return None;
        }
        let organizer = self.config.aor_of(sip);
        let st = self.conference.as_mut()?;
        if sip.params.contains("opaque") {
            let mut conf = ConfUri::parse(&uri.to_string())?;
            conf.organizer = organizer.to_ascii_lowercase();
            return Some(match &conf.id {
                None => Target::Conf(conf),
                Some(id) if st.ensure(now, id) => Target::Conf(conf),
                Some(_) => Target::Missing,
            });
        }
        let user = sip.user_unescaped()?;
        let id = st.focus.config().dial_in.as_ref()?.id_of(&user)?.to_owned();
        if !st.ensure(now, &id) {
            return Some(Target::Missing);
        }
        let c = st.focus.conference(&id)?;
        Some(Target::DialIn(c.focus_uri()))
    }

    /// SERVICE with C3P to a focus factory.
    fn factory_request(&mut self, now: Instant, id: TransactionId, req: &Request, factory: &ConfUri) {
        match req.method {
            Method::Other(ref m) if m == "SERVICE" => {}
            Method::Options => return self.options_reply(now, id, req),
            _ => {
                return self.reply(now, id, req, 405, None, |r| r.headers.push(HeaderName::Allow, "SERVICE, OPTIONS"));
            }
        }
        self.c3p_service(now, id, req, factory);
    }

    /// SERVICE with C3P to a focus or factory: the answer in the 200 OK.
    fn c3p_service(&mut self, now: Instant, id: TransactionId, req: &Request, target: &ConfUri) {
        let unix = self.clock.unix(now);
        let Some(request) = self.c3p_body(now, id, req) else { return };
        let Some(sender) = self.authenticate_sender(now, id, req, unix) else { return };
        let Some(st) = self.conference.as_mut() else { return };
        st.counters.c3p_requests += 1;
        let (body, refusal) = st.focus.execute(unix, &sender, target, &request);
        if refusal.is_some() {
            st.counters.c3p_failures += 1;
        }
        self.conference_outputs(now);
        self.reply(now, id, req, 200, None, |r| {
            r.headers.push(HeaderName::ContentType, C3P_TYPE);
            r.body = body.into_bytes();
        });
    }

    /// The C3P request in `req`'s body; answers 415 or 400 (and returns `None`) when there is none.
    fn c3p_body(&mut self, now: Instant, id: TransactionId, req: &Request) -> Option<c3p::Request> {
        if content_type(req).as_deref() != Some(C3P_TYPE) {
            self.reply(now, id, req, 415, None, |r| r.headers.push(HeaderName::Accept, C3P_TYPE));
            return None;
        }
        match c3p::parse(&req.body) {
            Ok(r) => Some(r),
            Err(e) => {
                if let Some(st) = self.conference.as_mut() {
                    st.counters.c3p_malformed += 1;
                }
                let reason = format!("Bad Request (malformed C3P: {e})");
                self.reply(now, id, req, 400, Some(&reason), |_| {});
                None
            }
        }
    }

    fn options_reply(&mut self, now: Instant, id: TransactionId, req: &Request) {
        self.reply(now, id, req, 200, None, |r| {
            r.headers.push(HeaderName::Allow, ALLOW);
            r.headers.push(HeaderName::AllowEvents, "conference");
            r.headers.push(HeaderName::Accept, format!("application/sdp, {C3P_TYPE}"));
        });
    }

    /// A request to a focus, an AV MCU or a dial-in URI.
    fn conference_target_request(
        &mut self,
        now: Instant,
        id: TransactionId,
        req: &Request,
        peer: Peer,
        uri: &ConfUri,
        dial_in: bool,
    ) {
        let Some(conference) = uri.id.clone() else { return };
        match &req.method {
            Method::Invite => self.conference_invite(now, id, req, peer, uri, &conference, dial_in),
            Method::Subscribe => self.conference_subscribe(now, id, req, peer, &conference),
            Method::Other(m) if m == "SERVICE" => self.c3p_service(now, id, req, &uri.with_kind(ConfKind::Focus)),
            Method::Options => self.options_reply(now, id, req),
            _ => self.reply(now, id, req, 405, None, |r| r.headers.push(HeaderName::Allow, ALLOW)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn conference_invite(
        &mut self,
        now: Instant,
        id: TransactionId,
        req: &Request,
        peer: Peer,
        uri: &ConfUri,
        conference: &str,
        dial_in: bool,
    ) {
        let unix = self.clock.unix(now);
        let ctype = content_type(req);
        let c3p = ctype.as_deref() == Some(C3P_TYPE);
        let sdp = ctype.as_deref() == Some("application/sdp");
        if !(c3p || sdp) || (c3p && (uri.kind != ConfKind::Focus || dial_in)) {
            let reason = if req.body.is_empty() {
                "Unsupported Media Type (an SDP offer or, to a focus, C3P addUser)"
            } else {
                "Unsupported Media Type"
            };
            let accept = if uri.kind == ConfKind::Focus && !dial_in {
                format!("application/sdp, {C3P_TYPE}")
            } else {
                "application/sdp".to_owned()
            };
            return self.reply(now, id, req, 415, Some(reason), |r| r.headers.push(HeaderName::Accept, accept));
        }
        let request = if c3p {
            let Some(r) = self.c3p_body(now, id, req) else { return };
            if !matches!(r.command, Command::AddUser { .. }) {
                return self.reply(now, id, req, 400, Some("Bad Request (a focus INVITE carries addUser)"), |_| {});
            }
            Some(r)
        } else {
            None
        };
        let Some(user) = self.authenticate_sender(now, id, req, unix) else { return };
        if first_contact(req).is_none() {
            return self.reply(now, id, req, 400, Some("Bad Request (INVITE without Contact)"), |_| {});
        }
        let Some(contact) = self.conference_contact(peer, uri) else {
            return self.reply(now, id, req, 500, Some("Server Internal Error (no listener)"), |_| {});
        };
        let target_peer = self.notify_peer(req, peer);
        let local_tag = self.layer.new_tag();
        if let Some(request) = request {
            // The focus dialog: addUser answered in the 200 OK.
            let Some(st) = self.conference.as_mut() else { return };
            st.counters.c3p_requests += 1;
            let (body, refusal) = st.focus.execute(unix, &user, uri, &request);
            if let Some(r) = refusal {
                st.counters.c3p_failures += 1;
                let (status, reason) = refusal_status(r);
                self.reply_tagged_with(now, id, req, status, reason, &local_tag, |resp| {
                    resp.headers.push(HeaderName::ContentType, C3P_TYPE);
                    resp.body = body.into_bytes();
                });
                self.conference_outputs(now);
                return;
            }
            st.counters.focus_joins += 1;
            let Some(dialog) =
                self.new_dialog(now, req, DialogKind::Focus, conference, &user, &local_tag, target_peer, &contact)
            else {
                return;
            };
            let key = (dialog.call_id.clone(), dialog.local_tag.clone());
            if let Some(st) = self.conference.as_mut() {
                st.dialogs.insert(key.clone(), dialog);
            }
            self.answer_invite(now, id, req, &key, Some((C3P_TYPE, body.into_bytes())));
            self.conference_outputs(now);
            return;
        }
        // Audio: the offer goes to the MCU.
        let Some(st) = self.conference.as_mut() else { return };
        if !st.config.media {
            return self.reply(now, id, req, 488, Some("Not Acceptable Here (no audio MCU on this server)"), |_| {});
        }
        if let Err(r) = st.focus.admits(conference, &user) {
            let (status, reason) = refusal_status(r);
            return self.reply(now, id, req, status, Some(reason), |_| {});
        }
        let Ok(offer) = String::from_utf8(req.body.clone()) else {
            return self.reply(now, id, req, 400, Some("Bad Request (SDP is not UTF-8)"), |_| {});
        };
        let member = st.focus.conference(conference).and_then(|c| c.user(&user)).is_some();
        let display =
            req.headers.from().ok().and_then(|f| f.display_name().map(|d| d.into_owned())).unwrap_or_default();
        let token = st.next_token;
        st.next_token += 1;
        let kind = DialogKind::Media { dial_in: dial_in || uri.kind == ConfKind::Focus || !member };
        st.pending.insert(
            token,
            PendingJoin {
                server: id,
                request: req.clone(),
                kind,
                conference: conference.to_owned(),
                user: user.clone(),
                display,
                local_tag,
                peer: target_peer,
                contact,
                cancelled: false,
            },
        );
        self.out.push_back(Output::Conference(ConferenceOutput::Join {
            token,
            conference: conference.to_owned(),
            offer,
            label: user,
        }));
    }

    /// Our Contact for a conference dialog: the conference URI on our listener's address, so requests in
    /// the dialog reach this server without DNS.
    fn conference_contact(&self, peer: Peer, uri: &ConfUri) -> Option<String> {
        let l = self.config.listener(peer.transport)?;
        let host = match l.addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            std::net::IpAddr::V4(ip) => ip.to_string(),
        };
        let user = uri.organizer.strip_prefix("sip:").and_then(|o| o.split('@').next()).unwrap_or("focus");
        let transport = match peer.transport {
            vienna_sip::Transport::Udp => String::new(),
            t => format!(";transport={}", t.as_str().to_ascii_lowercase()),
        };
        let opaque = uri.to_string();
        let opaque = opaque.split_once(";gruu").map_or("", |(_, rest)| rest);
        Some(format!("<sip:{user}@{host}:{}{transport};gruu{opaque}>", l.addr.port()))
    }

    /// A dialog for the INVITE `req` (not yet in the table).
    #[allow(clippy::too_many_arguments)]
    fn new_dialog(
        &mut self,
        now: Instant,
        req: &Request,
        kind: DialogKind,
        conference: &str,
        user: &str,
        local_tag: &str,
        peer: Peer,
        contact: &str,
    ) -> Option<Dialog> {
        let to = req.headers.to().ok()?;
        let mut local = to;
        local.params.remove("tag");
        let remote_target = first_contact(req)?.uri;
        let t1 = self.config.timers.t1;
        Some(Dialog {
            kind,
            conference: conference.to_owned(),
            user: user.to_owned(),
            call_id: req.headers.call_id().ok()?.to_owned(),
            local_tag: local_tag.to_owned(),
            local: local.to_string(),
            remote: req.headers.get(&HeaderName::From)?.to_owned(),
            remote_target,
            peer,
            contact: contact.to_owned(),
            local_cseq: 0,
            invite: None,
            acked: false,
            retransmit_at: None,
            retransmit_interval: t1,
            give_up_at: now + 64 * t1,
            participant: None,
            answer: None,
        })
    }

    /// Sends the 2xx of an INVITE in dialog `key` and keeps it for retransmission until the ACK.
    fn answer_invite(
        &mut self,
        now: Instant,
        id: TransactionId,
        req: &Request,
        key: &DialogKey,
        body: Option<(&str, Vec<u8>)>,
    ) {
        let Some(d) = self.conference.as_ref().and_then(|s| s.dialogs.get(key)) else { return };
        let mut r = req.make_response_with_tag(200, None, &d.local_tag);
        r.headers.push(HeaderName::Contact, d.contact.clone());
        r.headers.push(HeaderName::Allow, ALLOW);
        r.headers.push(HeaderName::Server, self.config.server_name.clone());
        if let Some((ctype, bytes)) = body {
            r.headers.push(HeaderName::ContentType, ctype);
            r.body = bytes;
        }
        let reliable = req
            .headers
            .top_via()
            .ok()
            .and_then(|v| vienna_sip::Transport::from_via(&v.transport))
            .is_some_and(|t| t.is_reliable());
        let t1 = self.config.timers.t1;
        if let Some(d) = self.conference.as_mut().and_then(|s| s.dialogs.get_mut(key)) {
            d.acked = false;
            d.invite = Some((id, r.clone()));
            d.retransmit_interval = t1;
            d.retransmit_at = (!reliable).then_some(now + t1);
            d.give_up_at = now + 64 * t1;
        }
        self.respond(now, id, r);
    }

    fn reply_tagged(&mut self, now: Instant, id: TransactionId, req: &Request, status: u16, reason: &str, tag: &str) {
        self.reply_tagged_with(now, id, req, status, reason, tag, |_| {});
    }

    #[allow(clippy::too_many_arguments)]
    fn reply_tagged_with(
        &mut self,
        now: Instant,
        id: TransactionId,
        req: &Request,
        status: u16,
        reason: &str,
        tag: &str,
        extra: impl FnOnce(&mut vienna_sip::Response),
    ) {
        let mut r = req.make_response_with_tag(status, Some(reason), tag);
        r.headers.push(HeaderName::Server, self.config.server_name.clone());
        extra(&mut r);
        self.respond(now, id, r);
    }

    /// A request in one of the focus's dialogs.
    fn in_dialog(&mut self, now: Instant, id: TransactionId, req: &Request, key: DialogKey) {
        let unix = self.clock.unix(now);
        match &req.method {
            Method::Bye => {
                self.reply(now, id, req, 200, None, |_| {});
                let Some(st) = self.conference.as_mut() else { return };
                let Some(d) = st.dialogs.remove(&key) else { return };
                if let Some(p) = &d.participant {
                    st.media.remove(&(d.conference.clone(), p.clone()));
                    self.out.push_back(Output::Conference(ConferenceOutput::Leave {
                        conference: d.conference.clone(),
                        participant: p.clone(),
                    }));
                }
                let _ = match d.kind {
                    DialogKind::Focus => st.focus.leave(&d.conference, &d.user),
                    DialogKind::Media { .. } => st.focus.media_left(&d.conference, &d.user),
                };
                self.conference_outputs(now);
            }
            Method::Info => {
                if req.body.is_empty() {
                    return self.reply(now, id, req, 200, None, |_| {});
                }
                let Some(request) = self.c3p_body(now, id, req) else { return };
                let Some(st) = self.conference.as_mut() else { return };
                let Some(d) = st.dialogs.get(&key) else { return };
                let (user, conference) = (d.user.clone(), d.conference.clone());
                let Some(target) = st.focus.conference(&conference).map(|c| c.focus_uri()) else {
                    return self.reply(now, id, req, 481, None, |_| {});
                };
                if matches!(request.command, Command::AddUser { .. } | Command::AddConference { .. }) {
                    return self.reply(
                        now,
                        id,
                        req,
                        400,
                        Some("Bad Request (not a command of a focus dialog)"),
                        |_| {},
                    );
                }
                st.counters.c3p_requests += 1;
                let query = matches!(request.command, Command::GetConference { .. });
                let (body, refusal) = st.focus.execute(unix, &user, &target, &request);
                if refusal.is_some() {
                    st.counters.c3p_failures += 1;
                }
                self.conference_outputs(now);
                // MS-CONFIM §4.3.1: commands are answered 202 Accepted; a query gets its document in a 200.
                let status = if query { 200 } else { 202 };
                self.reply(now, id, req, status, None, |r| {
                    r.headers.push(HeaderName::ContentType, C3P_TYPE);
                    r.body = body.into_bytes();
                });
            }
            Method::Invite => {
                // A re-INVITE (session refresh, hold): the same answer again; media stays as it is.
                let answer = self.conference.as_ref().and_then(|s| s.dialogs.get(&key)).and_then(|d| d.answer.clone());
                if let Some(contact) = first_contact(req)
                    && let Some(d) = self.conference.as_mut().and_then(|s| s.dialogs.get_mut(&key))
                {
                    d.remote_target = contact.uri;
                }
                let body = answer.map(|a| ("application/sdp", a.into_bytes()));
                self.answer_invite(now, id, req, &key, body);
            }
            Method::Update | Method::Options => self.reply(now, id, req, 200, None, |r| {
                r.headers.push(HeaderName::Allow, ALLOW);
            }),
            _ => self.reply(now, id, req, 405, None, |r| r.headers.push(HeaderName::Allow, ALLOW)),
        }
    }

    /// SUBSCRIBE `Event: conference` to a focus or dial-in URI.
    fn conference_subscribe(&mut self, now: Instant, id: TransactionId, req: &Request, peer: Peer, conference: &str) {
        let unix = self.clock.unix(now);
        let conference_event =
            req.headers.event().ok().flatten().is_some_and(|e| e.package.eq_ignore_ascii_case("conference"));
        if !conference_event {
            return self.reply(now, id, req, 489, None, |r| r.headers.push(HeaderName::AllowEvents, "conference"));
        }
        let Some(st) = self.conference.as_ref() else { return };
        let (min, max, limit) =
            (st.config.min_subscription_secs, st.config.max_subscription_secs, st.config.max_subscriptions);
        let Ok(asked) = req.headers.expires() else {
            return self.reply(now, id, req, 400, Some("Bad Request (malformed Expires header)"), |_| {});
        };
        let asked = asked.unwrap_or(max);
        if asked != 0 && asked < min {
            return self.reply(now, id, req, 423, None, |r| r.headers.push(HeaderName::MinExpires, min.to_string()));
        }
        let accepts = {
            let mut any = false;
            let mut ok = false;
            for v in req.headers.values(&HeaderName::Accept) {
                any = true;
                let mime = v.split(';').next().unwrap_or("").trim();
                ok |= mime == "*/*"
                    || mime.eq_ignore_ascii_case("application/*")
                    || mime.eq_ignore_ascii_case(CONFERENCE_INFO_TYPE);
            }
            ok || !any
        };
        if !accepts {
            return self.reply(now, id, req, 406, Some("Not Acceptable (application/conference-info+xml)"), |_| {});
        }
        if st.subs.len() >= limit && asked > 0 {
            return self.reply(now, id, req, 503, Some("Service Unavailable (too many subscriptions)"), |_| {});
        }
        let Some(subscriber) = self.authenticate_sender(now, id, req, unix) else { return };
        let (Ok(from), Ok(to), Ok(call_id)) = (req.headers.from(), req.headers.to(), req.headers.call_id()) else {
            return self.reply(now, id, req, 400, None, |_| {});
        };
        if from.tag().is_none() {
            return self.reply(now, id, req, 400, Some("Bad Request (From without tag)"), |_| {});
        }
        let Some(target) = first_contact(req) else {
            return self.reply(now, id, req, 400, Some("Bad Request (SUBSCRIBE without Contact)"), |_| {});
        };
        let Some(contact) = self.config.contact(peer.transport) else {
            return self.reply(now, id, req, 500, Some("Server Internal Error (no listener)"), |_| {});
        };
        let tag = self.layer.new_tag();
        let granted = asked.min(max);
        let mut local = to;
        local.params.remove("tag");
        let benotify = req.headers.has_option_tag(&HeaderName::Supported, "ms-benotify");
        let sub = Subscription {
            conference: conference.to_owned(),
            subscriber,
            call_id: call_id.to_owned(),
            local_tag: tag.clone(),
            local: local.to_string(),
            remote: req.headers.get(&HeaderName::From).unwrap_or_default().to_owned(),
            remote_target: target.uri,
            peer: self.notify_peer(req, peer),
            contact: contact.clone(),
            event: req.headers.get(&HeaderName::Event).unwrap_or("conference").to_owned(),
            local_cseq: 0,
            expires_at: now + Duration::from_secs(u64::from(granted)),
            version: 0,
            in_flight: None,
            pending: Pending::Full,
            terminating: (granted == 0).then_some("timeout"),
            final_sent: false,
            benotify,
        };
        let key = (sub.call_id.clone(), tag.clone());
        if let Some(st) = self.conference.as_mut() {
            st.counters.subscriptions += 1;
            st.subs.insert(key.clone(), sub);
        }
        let mut r = req.make_response_with_tag(200, None, &tag);
        r.headers.push(HeaderName::Server, self.config.server_name.clone());
        r.headers.push(HeaderName::Expires, granted.to_string());
        r.headers.push(HeaderName::Contact, contact);
        self.respond(now, id, r);
        self.send_conference_notify(now, &key);
    }

    /// A SUBSCRIBE in one of the focus's subscriptions: refresh, or `Expires: 0` to end it.
    fn resubscribe(&mut self, now: Instant, id: TransactionId, req: &Request, key: DialogKey) {
        let Some(st) = self.conference.as_mut() else { return };
        let (min, max) = (st.config.min_subscription_secs, st.config.max_subscription_secs);
        let Ok(asked) = req.headers.expires() else {
            return self.reply(now, id, req, 400, Some("Bad Request (malformed Expires header)"), |_| {});
        };
        let asked = asked.unwrap_or(max);
        if asked != 0 && asked < min {
            return self.reply(now, id, req, 423, None, |r| r.headers.push(HeaderName::MinExpires, min.to_string()));
        }
        let granted = asked.min(max);
        let Some(sub) = st.subs.get_mut(&key) else { return };
        sub.expires_at = now + Duration::from_secs(u64::from(granted));
        if granted == 0 {
            sub.terminating = Some("timeout");
        }
        if let Some(c) = first_contact(req) {
            sub.remote_target = c.uri;
        }
        // RFC 6665 §4.2.1.2: a refresh is answered with a NOTIFY of the current state.
        sub.pending = Pending::Full;
        let contact = sub.contact.clone();
        self.reply(now, id, req, 200, None, |r| {
            r.headers.push(HeaderName::Expires, granted.to_string());
            r.headers.push(HeaderName::Contact, contact);
        });
        self.send_conference_notify(now, &key);
    }

    /// Sends subscription `key` its next NOTIFY, unless one is in flight or nothing is due.
    fn send_conference_notify(&mut self, now: Instant, key: &DialogKey) {
        let Some(st) = self.conference.as_mut() else { return };
        let Some(sub) = st.subs.get_mut(key) else { return };
        if sub.in_flight.is_some() || sub.final_sent {
            return;
        }
        if sub.pending == Pending::Nothing && sub.terminating.is_none() {
            return;
        }
        let conference = st.focus.conference(&sub.conference);
        let terminating = sub.terminating.or(conference.is_none().then_some("noresource"));
        let pending = std::mem::take(&mut sub.pending);
        let version = sub.version + 1;
        let body = match (conference, &pending) {
            (Some(c), Pending::Full) => Some(c.full_document(version)),
            (Some(c), Pending::Partial(changes)) => Some(c.partial_document(changes, version)),
            (Some(c), Pending::Nothing) if sub.version == 0 => Some(c.full_document(version)),
            _ => None,
        };
        if body.is_some() {
            sub.version = version;
        }
        let state = match terminating {
            Some(reason) => format!("terminated;reason={reason}"),
            None => {
                let left = sub.expires_at.saturating_duration_since(now).as_secs();
                format!("active;expires={left}")
            }
        };
        sub.local_cseq += 1;
        // BENOTIFY hook: with `sub.benotify` a Microsoft subscriber could get this as BENOTIFY (MS-SIP §3.5,
        // sent without a client transaction); NOTIFY is sent to everyone today.
        let mut request = Request::new(Method::Notify, sub.remote_target.clone());
        let h = &mut request.headers;
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, format!("{};tag={}", sub.local, sub.local_tag));
        h.push(HeaderName::To, sub.remote.clone());
        h.push(HeaderName::CallId, sub.call_id.clone());
        h.push(HeaderName::CSeq, format!("{} NOTIFY", sub.local_cseq));
        h.push(HeaderName::Contact, sub.contact.clone());
        h.push(HeaderName::Event, sub.event.clone());
        h.push(HeaderName::SubscriptionState, state);
        if let Some(body) = body {
            h.push(HeaderName::ContentType, CONFERENCE_INFO_TYPE);
            request.body = body.into_bytes();
        }
        let peer = sub.peer;
        if terminating.is_some() {
            sub.final_sent = true;
        }
        st.counters.notifies += 1;
        let branch = self.layer.new_branch();
        let Some(via) = self.config.via(peer.transport, &branch) else {
            if let Some(st) = self.conference.as_mut() {
                st.subs.remove(key);
            }
            return;
        };
        request.headers.push_front(HeaderName::Via, via);
        match self.layer.send_request(now, request, peer) {
            Ok(tx) => {
                if let Some(st) = self.conference.as_mut() {
                    st.client_txs.insert(tx, ClientTx::Notify(key.clone()));
                    if let Some(sub) = st.subs.get_mut(key) {
                        sub.in_flight = Some(tx);
                    }
                }
            }
            Err(_) => {
                self.counters.send_errors += 1;
                if let Some(st) = self.conference.as_mut() {
                    st.subs.remove(key);
                }
            }
        }
    }

    /// Sends a BYE in `dialog` (which has left the table) and tells the MCU if it carried audio.
    fn send_bye(&mut self, now: Instant, mut dialog: Dialog) {
        if let Some(p) = dialog.participant.take() {
            if let Some(st) = self.conference.as_mut() {
                st.media.remove(&(dialog.conference.clone(), p.clone()));
            }
            self.out.push_back(Output::Conference(ConferenceOutput::Leave {
                conference: dialog.conference.clone(),
                participant: p,
            }));
        }
        dialog.local_cseq += 1;
        let mut request = Request::new(Method::Bye, dialog.remote_target.clone());
        let h = &mut request.headers;
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, format!("{};tag={}", dialog.local, dialog.local_tag));
        h.push(HeaderName::To, dialog.remote.clone());
        h.push(HeaderName::CallId, dialog.call_id.clone());
        h.push(HeaderName::CSeq, format!("{} BYE", dialog.local_cseq + 100));
        let branch = self.layer.new_branch();
        let Some(via) = self.config.via(dialog.peer.transport, &branch) else { return };
        request.headers.push_front(HeaderName::Via, via);
        match self.layer.send_request(now, request, dialog.peer) {
            Ok(tx) => {
                if let Some(st) = self.conference.as_mut() {
                    st.counters.byes += 1;
                    st.client_txs.insert(tx, ClientTx::Bye);
                }
            }
            Err(_) => self.counters.send_errors += 1,
        }
    }

    /// Carries out what the focus queued: store writes, roster NOTIFYs, ended conferences and removed
    /// users (BYE, MCU), mute changes (MCU).
    fn conference_outputs(&mut self, now: Instant) {
        let Some(st) = self.conference.as_mut() else { return };
        let outputs: Vec<FocusOutput> = std::iter::from_fn(|| st.focus.poll_output()).collect();
        let mut notify: Vec<DialogKey> = Vec::new();
        for o in outputs {
            let Some(st) = self.conference.as_mut() else { return };
            match o {
                FocusOutput::Save(id) => {
                    if let Some(c) = st.focus.conference(&id) {
                        self.out.push_back(Output::Conference(ConferenceOutput::Save(to_record(c))));
                    }
                }
                FocusOutput::Remove(id) => self.out.push_back(Output::Conference(ConferenceOutput::Remove(id))),
                FocusOutput::Roster { conference, changes } => {
                    for key in st.subscriptions_of(&conference) {
                        if let Some(sub) = st.subs.get_mut(&key) {
                            sub.pending.merge(&changes);
                        }
                        if !notify.contains(&key) {
                            notify.push(key);
                        }
                    }
                }
                FocusOutput::Ended(id) => {
                    st.counters.conferences_ended += 1;
                    for key in st.subscriptions_of(&id) {
                        if let Some(sub) = st.subs.get_mut(&key) {
                            sub.terminating = Some("noresource");
                        }
                        if !notify.contains(&key) {
                            notify.push(key);
                        }
                    }
                    let keys: Vec<DialogKey> =
                        st.dialogs.iter().filter(|(_, d)| d.conference == id).map(|(k, _)| k.clone()).collect();
                    let dialogs: Vec<Dialog> = keys.iter().filter_map(|k| st.dialogs.remove(k)).collect();
                    for p in st.pending.values_mut().filter(|p| p.conference == id) {
                        p.cancelled = true;
                    }
                    for d in dialogs {
                        self.send_bye(now, d);
                    }
                    self.out.push_back(Output::Conference(ConferenceOutput::End { conference: id }));
                }
                FocusOutput::UserRemoved { conference, user } => {
                    let keys = st.dialogs_of(&conference, &user);
                    let dialogs: Vec<Dialog> = keys.iter().filter_map(|k| st.dialogs.remove(k)).collect();
                    for d in dialogs {
                        self.send_bye(now, d);
                    }
                }
                FocusOutput::MediaChanged { conference, user, muted } => {
                    if let Some(participant) = st.participant_of(&conference, &user) {
                        self.out.push_back(Output::Conference(ConferenceOutput::Mute {
                            conference,
                            participant,
                            muted,
                        }));
                    }
                }
            }
        }
        for key in notify {
            self.send_conference_notify(now, &key);
        }
    }

    /// Handles a transaction event that belongs to the focus (the ACK of its 2xx, a CANCEL of an INVITE
    /// waiting for the MCU, the outcome of its NOTIFYs and BYEs). Returns whether it did.
    pub(super) fn conference_event(&mut self, now: Instant, event: &TransactionEvent) -> bool {
        let Some(st) = self.conference.as_mut() else { return false };
        match event {
            TransactionEvent::Ack { request, .. } => {
                let Some(tag) = request.headers.to().ok().and_then(|t| t.tag().map(str::to_owned)) else {
                    return false;
                };
                let key = (request.headers.call_id().unwrap_or_default().to_owned(), tag);
                let Some(d) = st.dialogs.get_mut(&key) else { return false };
                d.acked = true;
                d.retransmit_at = None;
                true
            }
            TransactionEvent::Cancel { id, invite: Some(invite), request, .. } => {
                let Some(p) = st.pending.values_mut().find(|p| p.server == *invite && !p.cancelled) else {
                    return false;
                };
                p.cancelled = true;
                let (original, tag) = (p.request.clone(), p.local_tag.clone());
                let (id, invite) = (*id, *invite);
                self.reply(now, id, request, 200, None, |_| {});
                self.reply_tagged(now, invite, &original, 487, "Request Terminated", &tag);
                true
            }
            TransactionEvent::Response { id, response } => {
                let Some(tx) = st.client_txs.get(id) else { return false };
                if response.status < 200 {
                    return true;
                }
                let ok = response.status < 300;
                if let ClientTx::Notify(key) = tx {
                    let key = key.clone();
                    st.client_txs.remove(id);
                    self.notify_done(now, &key, ok);
                } else {
                    st.client_txs.remove(id);
                }
                true
            }
            TransactionEvent::Timeout { id, .. }
            | TransactionEvent::TransportError { id }
            | TransactionEvent::Terminated { id } => {
                let Some(tx) = st.client_txs.remove(id) else { return false };
                if let ClientTx::Notify(key) = tx {
                    self.notify_done(now, &key, false);
                }
                true
            }
            _ => false,
        }
    }

    /// A NOTIFY of subscription `key` finished: the next one goes, or the subscription ends.
    fn notify_done(&mut self, now: Instant, key: &DialogKey, ok: bool) {
        let Some(st) = self.conference.as_mut() else { return };
        let Some(sub) = st.subs.get_mut(key) else { return };
        sub.in_flight = None;
        if !ok || sub.final_sent {
            if !ok {
                st.counters.notify_failures += 1;
            }
            st.subs.remove(key);
            return;
        }
        self.send_conference_notify(now, key);
    }

    /// When the focus next needs [`Core::handle_timeout`].
    pub(super) fn conference_timeout(&self) -> Option<Instant> {
        let st = self.conference.as_ref()?;
        let subs = st.subs.values().filter(|s| !s.final_sent).map(|s| s.expires_at).min();
        let dialogs = st
            .dialogs
            .values()
            .filter(|d| !d.acked && d.invite.is_some())
            .map(|d| d.retransmit_at.map_or(d.give_up_at, |t| t.min(d.give_up_at)))
            .min();
        [subs, dialogs, st.next_expiry_check].into_iter().flatten().min()
    }

    /// Runs the focus's timers: subscription expiry, 2xx retransmissions, conference lifetimes.
    pub(super) fn conference_timers(&mut self, now: Instant) {
        let unix = self.clock.unix(now);
        let t2 = self.config.timers.t2;
        let Some(st) = self.conference.as_mut() else { return };
        // Subscriptions that ran out end with a last NOTIFY.
        let expired: Vec<DialogKey> =
            st.subs.iter().filter(|(_, s)| !s.final_sent && s.expires_at <= now).map(|(k, _)| k.clone()).collect();
        for key in &expired {
            if let Some(sub) = st.subs.get_mut(key) {
                sub.terminating.get_or_insert("timeout");
                if sub.in_flight.is_some() {
                    // It goes after the NOTIFY in flight; past its time by then is fine.
                    sub.expires_at = now + Duration::from_secs(1);
                }
            }
        }
        // 2xx retransmissions, and dialogs whose ACK never came.
        let mut resend = Vec::new();
        let mut dead = Vec::new();
        for (k, d) in st.dialogs.iter_mut() {
            if d.acked || d.invite.is_none() {
                continue;
            }
            if now >= d.give_up_at {
                dead.push(k.clone());
            } else if d.retransmit_at.is_some_and(|t| t <= now) {
                d.retransmit_interval = (d.retransmit_interval * 2).min(t2);
                d.retransmit_at = Some(now + d.retransmit_interval);
                if let Some((tx, r)) = &d.invite {
                    resend.push((*tx, r.clone()));
                }
            }
        }
        let gone: Vec<Dialog> = dead.iter().filter_map(|k| st.dialogs.remove(k)).collect();
        for d in &gone {
            let _ = match d.kind {
                DialogKind::Focus => st.focus.leave(&d.conference, &d.user),
                DialogKind::Media { .. } => st.focus.media_left(&d.conference, &d.user),
            };
        }
        // Conference lifetimes.
        if st.next_expiry_check.is_none_or(|t| t <= now) {
            st.next_expiry_check = (st.focus.conferences().next().is_some()).then_some(now + EXPIRY_EVERY);
            if st.focus.poll_timeout().is_some_and(|t| t <= unix) {
                st.focus.handle_timeout(unix);
            }
        }
        for (tx, r) in resend {
            let _ = self.layer.send_response(now, tx, r);
        }
        for d in gone {
            self.send_bye(now, d);
        }
        for key in expired {
            self.send_conference_notify(now, &key);
        }
        self.conference_outputs(now);
    }

    /// Ends every roster subscription (`deactivated`: subscribe again) and every conference dialog before a
    /// graceful stop.
    pub(super) fn conference_shutdown(&mut self, now: Instant) {
        let Some(st) = self.conference.as_mut() else { return };
        let subs: Vec<DialogKey> = st.subs.keys().cloned().collect();
        for key in &subs {
            if let Some(sub) = st.subs.get_mut(key) {
                sub.terminating = Some("deactivated");
            }
        }
        let dialogs: Vec<Dialog> = std::mem::take(&mut st.dialogs).into_values().collect();
        for d in dialogs {
            self.send_bye(now, d);
        }
        for key in subs {
            self.send_conference_notify(now, &key);
        }
    }

    /// Starts the periodic lifetime check once conferences exist.
    pub(super) fn conference_arm(&mut self, now: Instant) {
        if let Some(st) = self.conference.as_mut()
            && st.next_expiry_check.is_none()
            && st.focus.conferences().next().is_some()
        {
            st.next_expiry_check = Some(now + EXPIRY_EVERY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_sip_statuses() {
        assert_eq!(refusal_status(Refusal::Locked).0, 403);
        assert_eq!(refusal_status(Refusal::NoConference).0, 404);
        assert_eq!(refusal_status(Refusal::Full).0, 486);
    }
}
