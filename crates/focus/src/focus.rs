//! The focus (MS-CONFBAS §3.2, MS-CONFPRO §3.2): conferences, who is in them and with which role and
//! media, and the C3P commands that change that. Sans-IO: each call takes the time and the sender and
//! returns the C3P answer and [`Output`]s (what to persist, which rosters changed).
//!
//! Authorization (MS-CONFBAS §3.2.5): the organizer creates and deletes conferences and is a presenter;
//! presenters lock, eject, change roles and mute others; anyone mutes themselves. Admission: a locked
//! conference admits nobody new (the organizer still may), nor a full one.

use std::collections::HashMap;

use vienna_xml::Writer;

use crate::c3p::{Command, Outcome, Request};
use crate::error::Refusal;
use crate::roster::{Conference, Endpoint, Media, Role, SessionType, User, UserChange, parse_rfc3339};
use crate::uri::{ConfKind, ConfUri, valid_id};

/// Settings of a [`Focus`].
#[derive(Clone, Debug)]
pub struct FocusConfig {
    /// Most conferences at once.
    pub max_conferences: usize,
    /// Most users in one conference.
    pub max_participants: u32,
    /// Lifetime of a conference whose creator asks for none, seconds (MS-CONFPRO: clients ask for hours).
    pub default_lifetime_secs: u64,
    /// Longest lifetime granted, seconds.
    pub max_lifetime_secs: u64,
    /// How standard SIP clients dial a conference: `sip:<prefix><id>@<domain>` (listed in the roster's
    /// `conf-uris`); `None` lists no dial-in URI.
    pub dial_in: Option<DialIn>,
}

/// The dial-in URI form of standard SIP clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialIn {
    /// User-part prefix before the conference id (`conf-`).
    pub prefix: String,
    /// The SIP domain.
    pub domain: String,
}

impl DialIn {
    /// `sip:<prefix><id>@<domain>`.
    pub fn uri(&self, id: &str) -> String {
        format!("sip:{}{id}@{}", self.prefix, self.domain)
    }

    /// The conference id a dialed user part names (`conf-ABCD1234` → `ABCD1234`), if it is one.
    pub fn id_of<'a>(&self, user: &'a str) -> Option<&'a str> {
        let rest = user.get(..self.prefix.len()).filter(|p| p.eq_ignore_ascii_case(&self.prefix))?;
        let id = &user[rest.len()..];
        valid_id(id).then_some(id)
    }
}

impl Default for FocusConfig {
    fn default() -> Self {
        FocusConfig {
            max_conferences: 10_000,
            max_participants: 250,
            default_lifetime_secs: 8 * 3600,
            max_lifetime_secs: 366 * 86_400,
            dial_in: None,
        }
    }
}

/// What the driver does after a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Store the conference (created or changed).
    Save(String),
    /// Remove the conference from the store.
    Remove(String),
    /// The roster of a conference changed: send each subscriber a partial document.
    Roster {
        /// Conference id.
        conference: String,
        /// The users that changed.
        changes: Vec<UserChange>,
    },
    /// The conference ended: end every subscription and media session (`deleteConference`, expiry).
    Ended(String),
    /// A user was ejected or left: end their focus dialog and media session.
    UserRemoved {
        /// Conference id.
        conference: String,
        /// The user's URI.
        user: String,
    },
    /// A user's media changed (mute): tell the MCU.
    MediaChanged {
        /// Conference id.
        conference: String,
        /// The user's URI.
        user: String,
        /// Whether the user's audio is kept out of the mix.
        muted: bool,
    },
}

/// The focus of every conference of this server.
pub struct Focus {
    config: FocusConfig,
    secret: [u8; 32],
    counter: u64,
    conferences: HashMap<String, Conference>,
    outputs: Vec<Output>,
}

impl Focus {
    /// A focus with no conferences; new conference ids are derived from `secret` (random per process).
    pub fn new(config: FocusConfig, secret: [u8; 32]) -> Focus {
        Focus { config, secret, counter: 0, conferences: HashMap::new(), outputs: Vec::new() }
    }

    /// Restores a stored conference (at start, or when a request names one the store has), with no users.
    pub fn restore(&mut self, conference: Conference) {
        let dial_in = self.config.dial_in.as_ref().map(|d| d.uri(&conference.id));
        self.conferences
            .insert(conference.id.clone(), Conference { users: Vec::new(), dominant: None, dial_in, ..conference });
    }

    /// The settings.
    pub fn config(&self) -> &FocusConfig {
        &self.config
    }

    /// A conference by id.
    pub fn conference(&self, id: &str) -> Option<&Conference> {
        self.conferences.get(id)
    }

    /// Every conference.
    pub fn conferences(&self) -> impl Iterator<Item = &Conference> {
        self.conferences.values()
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() { None } else { Some(self.outputs.remove(0)) }
    }

    fn new_id(&mut self, now: u64) -> String {
        loop {
            self.counter += 1;
            let mac =
                vienna_crypto::hmac_sha256(&self.secret, &[b"conf", &self.counter.to_le_bytes(), &now.to_le_bytes()]);
            let id = hex::encode_upper(&mac[..16]);
            if !self.conferences.contains_key(&id) {
                return id;
            }
        }
    }

    /// The earliest conference expiry, for the driver's timer.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.conferences.values().filter_map(|c| c.expires_at).min()
    }

    /// Ends conferences whose lifetime is over (and that nobody is in).
    pub fn handle_timeout(&mut self, now: u64) {
        let over: Vec<String> = self
            .conferences
            .values()
            .filter(|c| c.expires_at.is_some_and(|t| t <= now) && c.users.is_empty())
            .map(|c| c.id.clone())
            .collect();
        for id in over {
            self.conferences.remove(&id);
            self.outputs.push(Output::Ended(id.clone()));
            self.outputs.push(Output::Remove(id));
        }
    }

    /// Handles a C3P request sent by `sender` (the authenticated address of record) to `target` (the
    /// SIP Request-URI: focus factory or focus). Returns the C3P response body.
    pub fn handle(&mut self, now: u64, sender: &str, target: &ConfUri, request: &Request) -> String {
        self.execute(now, sender, target, request).0
    }

    /// Like [`Focus::handle`], and says why the command failed, if it did.
    pub fn execute(
        &mut self,
        now: u64,
        sender: &str,
        target: &ConfUri,
        request: &Request,
    ) -> (String, Option<Refusal>) {
        let (outcome, refusal) = match self.command(now, sender, target, request) {
            Ok(content) => (Outcome::Success(content), None),
            Err(refusal) => (Outcome::Failure(refusal.reason()), Some(refusal)),
        };
        (crate::c3p::response(request, &outcome), refusal)
    }

    /// Whether `user` may join conference `id` now: already in it, or it is neither locked (the organizer
    /// always may) nor full.
    pub fn admits(&self, id: &str, user: &str) -> Result<(), Refusal> {
        let c = self.conferences.get(id).ok_or(Refusal::NoConference)?;
        if c.user(user).is_some() {
            return Ok(());
        }
        if c.locked && !c.organizer.eq_ignore_ascii_case(user) {
            return Err(Refusal::Locked);
        }
        let max = self.config.max_participants;
        if c.users.len() as u32 >= c.max_participants.unwrap_or(max).min(max) {
            return Err(Refusal::Full);
        }
        Ok(())
    }

    fn command(
        &mut self,
        now: u64,
        sender: &str,
        target: &ConfUri,
        request: &Request,
    ) -> Result<Option<String>, Refusal> {
        match (&target.kind, &request.command) {
            (
                ConfKind::FocusFactory,
                Command::AddConference { subject, conference_id, expiry_time, admission_policy },
            ) => {
                if !sender.eq_ignore_ascii_case(&target.organizer) {
                    return Err(Refusal::Unauthorized);
                }
                let expires = expiry_time.as_deref().and_then(parse_rfc3339);
                let id = self.add_conference(now, sender, subject, conference_id.as_deref(), expires)?;
                if let Some(policy) = admission_policy
                    && let Some(c) = self.conferences.get_mut(&id)
                {
                    c.admission_policy.clone_from(policy);
                }
                Ok(Some(self.conferences[&id].info_fragment()))
            }
            (ConfKind::FocusFactory, Command::GetConferencingCapabilities) => {
                let mut w = Writer::fragment();
                w.start("mcu-types").leaf("mcuType", "audio-video").end();
                Ok(Some(w.finish()))
            }
            (_, Command::GetConference { keys, conference_id }) => {
                let id = conference_id.clone().or_else(|| conf_id(&keys.conf_entity)).or_else(|| target.id.clone());
                let c = id.and_then(|id| self.conferences.get(&id)).ok_or(Refusal::NoConference)?;
                Ok(Some(c.info_fragment()))
            }
            (_, Command::DeleteConference { keys }) => {
                let id = conf_id(&keys.conf_entity).or_else(|| target.id.clone()).ok_or(Refusal::NoConference)?;
                let c = self.conferences.get(&id).ok_or(Refusal::NoConference)?;
                if !c.organizer.eq_ignore_ascii_case(sender) {
                    return Err(Refusal::Unauthorized);
                }
                let fragment =
                    format!("<conference-info entity=\"{}\"/>", vienna_xml::escape(&c.focus_uri().to_string()));
                self.conferences.remove(&id);
                self.outputs.push(Output::Ended(id.clone()));
                self.outputs.push(Output::Remove(id));
                Ok(Some(fragment))
            }
            (ConfKind::Focus, Command::AddUser { user, endpoint, .. }) => {
                let id = target.id.as_deref().ok_or(Refusal::NoConference)?;
                if !user.is_empty() && !user.eq_ignore_ascii_case(sender) {
                    // Dial-out (adding someone else) is not done.
                    return Err(Refusal::Unsupported);
                }
                let role = self.join(now, id, sender, "", endpoint.as_deref())?;
                let mut w = Writer::fragment();
                w.start("conferenceKeys").attr("confEntity", &target.to_string()).end();
                w.start("user").attr("xmlns", crate::c3p::NS_CI).attr("entity", sender);
                w.start("roles").leaf("entry", role.as_str()).end();
                if let Some(e) = endpoint {
                    w.start("endpoint").attr("entity", e).end();
                }
                w.end();
                Ok(Some(w.finish()))
            }
            (ConfKind::Focus, Command::DeleteUser { keys }) => {
                let id = target.id.as_deref().ok_or(Refusal::NoConference)?;
                let user = keys.user_entity.as_deref().ok_or(Refusal::NoUser)?;
                if !user.eq_ignore_ascii_case(sender) {
                    self.require_presenter(id, sender)?;
                }
                self.leave(id, user)?;
                Ok(None)
            }
            (ConfKind::Focus, Command::ModifyConferenceLock { locked, .. }) => {
                let id = target.id.as_deref().ok_or(Refusal::NoConference)?;
                self.require_presenter(id, sender)?;
                let c = self.conferences.get_mut(id).ok_or(Refusal::NoConference)?;
                c.locked = *locked;
                self.outputs.push(Output::Save(id.to_owned()));
                self.outputs.push(Output::Roster { conference: id.to_owned(), changes: Vec::new() });
                Ok(None)
            }
            (ConfKind::Focus, Command::ModifyUserRoles { keys, roles }) => {
                let id = target.id.as_deref().ok_or(Refusal::NoConference)?;
                self.require_presenter(id, sender)?;
                let user = keys.user_entity.as_deref().ok_or(Refusal::NoUser)?;
                let role = roles.iter().find_map(|r| Role::parse(r)).ok_or(Refusal::Other)?;
                let c = self.conferences.get_mut(id).ok_or(Refusal::NoConference)?;
                let u = c.user_mut(user).ok_or(Refusal::NoUser)?;
                u.role = role;
                self.outputs.push(Output::Roster {
                    conference: id.to_owned(),
                    changes: vec![UserChange::Updated(u.entity.clone())],
                });
                Ok(None)
            }
            (ConfKind::Focus, Command::ModifyEndpointMedia { keys, status, ingress_filter }) => {
                let id = target.id.as_deref().ok_or(Refusal::NoConference)?;
                let user = keys.user_entity.as_deref().ok_or(Refusal::NoUser)?;
                if !user.eq_ignore_ascii_case(sender) {
                    self.require_presenter(id, sender)?;
                }
                let muted = match (status.as_deref(), ingress_filter.as_deref()) {
                    (_, Some("block")) | (Some("recvonly" | "inactive"), _) => true,
                    (_, Some("unblock")) | (Some("sendrecv" | "sendonly"), _) => false,
                    _ => return Err(Refusal::Other),
                };
                self.set_muted(id, user, muted)?;
                Ok(None)
            }
            (_, Command::Other(_)) => Err(Refusal::Unsupported),
            _ => Err(Refusal::Unsupported),
        }
    }

    fn require_presenter(&self, id: &str, sender: &str) -> Result<(), Refusal> {
        let c = self.conferences.get(id).ok_or(Refusal::NoConference)?;
        let presenter =
            c.organizer.eq_ignore_ascii_case(sender) || c.user(sender).is_some_and(|u| u.role == Role::Presenter);
        if presenter { Ok(()) } else { Err(Refusal::Unauthorized) }
    }

    /// Creates a conference of `organizer` (also for standard clients, through the admin API); returns
    /// its id. `requested_id` is used when valid and free; `expires_at` is capped by the configuration.
    pub fn add_conference(
        &mut self,
        now: u64,
        organizer: &str,
        subject: &str,
        requested_id: Option<&str>,
        expires_at: Option<u64>,
    ) -> Result<String, Refusal> {
        if self.conferences.len() >= self.config.max_conferences {
            return Err(Refusal::Full);
        }
        let id = match requested_id.filter(|id| valid_id(id)) {
            Some(id) if self.conferences.contains_key(id) => return Err(Refusal::Exists),
            Some(id) => id.to_owned(),
            None => self.new_id(now),
        };
        let expires = expires_at
            .filter(|&t| t > now)
            .unwrap_or(now + self.config.default_lifetime_secs)
            .min(now + self.config.max_lifetime_secs);
        let dial_in = self.config.dial_in.as_ref().map(|d| d.uri(&id));
        self.conferences.insert(
            id.clone(),
            Conference {
                id: id.clone(),
                organizer: organizer.to_ascii_lowercase(),
                subject: subject.to_owned(),
                locked: false,
                admission_policy: "openAuthenticated".into(),
                max_participants: None,
                created_at: now,
                expires_at: Some(expires),
                users: Vec::new(),
                dial_in,
                dominant: None,
            },
        );
        self.outputs.push(Output::Save(id.clone()));
        Ok(id)
    }

    /// `user` joins conference `id` (the focus INVITE, or a standard client dialing the conference);
    /// returns the granted role.
    pub fn join(
        &mut self,
        now: u64,
        id: &str,
        user: &str,
        display_text: &str,
        endpoint: Option<&str>,
    ) -> Result<Role, Refusal> {
        let max = self.config.max_participants;
        let c = self.conferences.get_mut(id).ok_or(Refusal::NoConference)?;
        let organizer = c.organizer.eq_ignore_ascii_case(user);
        let role = if organizer { Role::Presenter } else { Role::Attendee };
        let endpoint = Endpoint {
            entity: endpoint.unwrap_or(user).to_owned(),
            session_type: SessionType::Focus,
            joined_at: now,
            media: Vec::new(),
        };
        match c.user_mut(user) {
            Some(existing) => {
                // A second focus session of the same user replaces the first.
                existing.endpoints.retain(|e| e.session_type != SessionType::Focus);
                existing.endpoints.insert(0, endpoint);
                if !display_text.is_empty() {
                    existing.display_text = display_text.to_owned();
                }
            }
            None => {
                if c.locked && !organizer {
                    return Err(Refusal::Locked);
                }
                if c.users.len() as u32 >= c.max_participants.unwrap_or(max).min(max) {
                    return Err(Refusal::Full);
                }
                c.users.push(User {
                    entity: user.to_owned(),
                    display_text: display_text.to_owned(),
                    role,
                    endpoints: vec![endpoint],
                });
            }
        }
        let role = c.user(user).map_or(role, |u| u.role);
        self.outputs
            .push(Output::Roster { conference: id.to_owned(), changes: vec![UserChange::Updated(user.to_owned())] });
        Ok(role)
    }

    /// `user` leaves conference `id` (BYE of the focus dialog, or deleteUser).
    pub fn leave(&mut self, id: &str, user: &str) -> Result<(), Refusal> {
        let c = self.conferences.get_mut(id).ok_or(Refusal::NoConference)?;
        let before = c.users.len();
        c.users.retain(|u| !u.entity.eq_ignore_ascii_case(user));
        if c.users.len() == before {
            return Err(Refusal::NoUser);
        }
        if c.dominant.as_deref().is_some_and(|d| d.eq_ignore_ascii_case(user)) {
            c.dominant = None;
        }
        self.outputs.push(Output::UserRemoved { conference: id.to_owned(), user: user.to_owned() });
        self.outputs
            .push(Output::Roster { conference: id.to_owned(), changes: vec![UserChange::Deleted(user.to_owned())] });
        Ok(())
    }

    /// `user`'s audio joined the MCU with `ssrc` (the AV endpoint appears in the roster). A user not yet
    /// in the conference (a standard client dialing the MCU directly) joins it, shown as `display_text`.
    pub fn media_joined(
        &mut self,
        now: u64,
        id: &str,
        user: &str,
        display_text: &str,
        endpoint: &str,
        ssrc: Option<u32>,
    ) -> Result<(), Refusal> {
        if self.conferences.get(id).ok_or(Refusal::NoConference)?.user(user).is_none() {
            self.join(now, id, user, display_text, None)?;
            // The focus endpoint of a user who only dialed the MCU is that same session.
            if let Some(u) = self.conferences.get_mut(id).and_then(|c| c.user_mut(user)) {
                u.endpoints.clear();
            }
        }
        let c = self.conferences.get_mut(id).ok_or(Refusal::NoConference)?;
        let u = c.user_mut(user).ok_or(Refusal::NoUser)?;
        u.endpoints.retain(|e| e.session_type != SessionType::AudioVideo);
        u.endpoints.push(Endpoint {
            entity: endpoint.to_owned(),
            session_type: SessionType::AudioVideo,
            joined_at: now,
            media: vec![Media { id: 1, kind: "audio", status: "sendrecv", src_id: ssrc }],
        });
        let entity = u.entity.clone();
        self.outputs.push(Output::Roster { conference: id.to_owned(), changes: vec![UserChange::Updated(entity)] });
        Ok(())
    }

    /// `user`'s audio left the MCU; a user with no other session leaves the conference.
    pub fn media_left(&mut self, id: &str, user: &str) -> Result<(), Refusal> {
        let c = self.conferences.get_mut(id).ok_or(Refusal::NoConference)?;
        let u = c.user_mut(user).ok_or(Refusal::NoUser)?;
        u.endpoints.retain(|e| e.session_type != SessionType::AudioVideo);
        if u.endpoints.is_empty() {
            return self.leave(id, user);
        }
        let entity = u.entity.clone();
        self.outputs.push(Output::Roster { conference: id.to_owned(), changes: vec![UserChange::Updated(entity)] });
        Ok(())
    }

    /// The SSRC of `user`'s audio became known (or changed): its `src-id`.
    pub fn set_src_id(&mut self, id: &str, user: &str, ssrc: u32) -> Result<(), Refusal> {
        let c = self.conferences.get_mut(id).ok_or(Refusal::NoConference)?;
        let u = c.user_mut(user).ok_or(Refusal::NoUser)?;
        let av = u.endpoints.iter_mut().find(|e| e.session_type == SessionType::AudioVideo).ok_or(Refusal::Other)?;
        let mut changed = false;
        for m in &mut av.media {
            changed |= m.src_id != Some(ssrc);
            m.src_id = Some(ssrc);
        }
        if changed {
            let entity = u.entity.clone();
            self.outputs.push(Output::Roster { conference: id.to_owned(), changes: vec![UserChange::Updated(entity)] });
        }
        Ok(())
    }

    /// The mixer's dominant speaker changed (`None`: nobody speaks); subscribers hear of it when it is
    /// another user than before.
    pub fn set_dominant(&mut self, id: &str, user: Option<&str>) -> Result<(), Refusal> {
        let c = self.conferences.get_mut(id).ok_or(Refusal::NoConference)?;
        let user = match user {
            Some(u) => Some(c.user(u).ok_or(Refusal::NoUser)?.entity.clone()),
            None => None,
        };
        if c.dominant != user {
            c.dominant = user;
            self.outputs.push(Output::Roster { conference: id.to_owned(), changes: Vec::new() });
        }
        Ok(())
    }

    /// Whether `user`'s audio is muted (`None`: no audio endpoint).
    pub fn is_muted(&self, id: &str, user: &str) -> Option<bool> {
        self.conferences.get(id)?.user(user)?.av()?.media.first().map(Media::muted)
    }

    /// Mutes or unmutes `user`'s audio.
    pub fn set_muted(&mut self, id: &str, user: &str, muted: bool) -> Result<(), Refusal> {
        let c = self.conferences.get_mut(id).ok_or(Refusal::NoConference)?;
        let u = c.user_mut(user).ok_or(Refusal::NoUser)?;
        let av = u.endpoints.iter_mut().find(|e| e.session_type == SessionType::AudioVideo).ok_or(Refusal::Other)?;
        for m in &mut av.media {
            m.status = if muted { "recvonly" } else { "sendrecv" };
        }
        let entity = u.entity.clone();
        self.outputs.push(Output::MediaChanged { conference: id.to_owned(), user: entity.clone(), muted });
        self.outputs.push(Output::Roster { conference: id.to_owned(), changes: vec![UserChange::Updated(entity)] });
        Ok(())
    }
}

/// The conference id of a focus URI.
fn conf_id(entity: &str) -> Option<String> {
    ConfUri::parse(entity).and_then(|u| u.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::c3p::parse;

    const ALICE: &str = "sip:alice@contoso.com";
    const BOB: &str = "sip:bob@contoso.com";

    fn request(to: &str, from: &str, id: u32, command: &str) -> Request {
        parse(
            format!(
                r#"<request xmlns="urn:ietf:params:xml:ns:cccp" C3PVersion="1" to="{to}" from="{from}" requestId="{id}">{command}</request>"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn code(response: &str) -> (String, Option<String>) {
        let root = vienna_xml::parse(response.as_bytes(), vienna_xml::Limits::default()).unwrap();
        (root.attr("code").unwrap().to_owned(), root.children[0].attr("reason").map(str::to_owned))
    }

    fn drain(f: &mut Focus) -> Vec<Output> {
        std::iter::from_fn(|| f.poll_output()).collect()
    }

    /// Alice creates a conference; returns the focus and its URI.
    fn created() -> (Focus, ConfUri) {
        let mut f = Focus::new(FocusConfig::default(), [3; 32]);
        let factory = ConfUri::focus_factory(ALICE);
        let add = request(
            &factory.to_string(),
            ALICE,
            1,
            "<addConference><conference-info xmlns=\"urn:ietf:params:xml:ns:conference-info\"><conference-description><subject>Sync</subject></conference-description></conference-info></addConference>",
        );
        let answer = f.handle(1000, ALICE, &factory, &add);
        assert_eq!(code(&answer).0, "success", "{answer}");
        let root = vienna_xml::parse(answer.as_bytes(), vienna_xml::Limits::default()).unwrap();
        let entity = root.children[0].children[0].attr("entity").unwrap();
        let focus = ConfUri::parse(entity).unwrap();
        assert_eq!(focus.kind, ConfKind::Focus);
        assert_eq!(drain(&mut f), [Output::Save(focus.id.clone().unwrap())]);
        (f, focus)
    }

    fn add_user(f: &mut Focus, focus: &ConfUri, who: &str) -> String {
        let cmd = format!(
            "<addUser><conferenceKeys confEntity=\"{focus}\"/><user xmlns=\"urn:ietf:params:xml:ns:conference-info\" entity=\"{who}\"><roles><entry>attendee</entry></roles><endpoint entity=\"{{{who}-guid}}\"/></user></addUser>"
        );
        f.handle(1001, who, focus, &request(&focus.to_string(), who, 2, &cmd))
    }

    #[test]
    fn create_join_mute_lock_eject_and_end() {
        let (mut f, focus) = created();
        let id = focus.id.clone().unwrap();
        // Only the organizer may create conferences on her factory.
        let factory = ConfUri::focus_factory(ALICE);
        let sneaky = request(&factory.to_string(), BOB, 5, "<addConference/>");
        assert_eq!(code(&f.handle(1000, BOB, &factory, &sneaky)).1.as_deref(), Some("unauthorized"));

        let answer = add_user(&mut f, &focus, ALICE);
        assert!(answer.contains("<entry>presenter</entry>"), "{answer}");
        let answer = add_user(&mut f, &focus, BOB);
        assert!(answer.contains("<entry>attendee</entry>"), "{answer}");
        drain(&mut f);
        assert_eq!(f.conference(&id).unwrap().users.len(), 2);

        // Bob's audio joins; he mutes himself; the MCU and the roster are told.
        f.media_joined(1002, &id, BOB, "", "av-bob", Some(42)).unwrap();
        drain(&mut f);
        let mute = format!(
            "<modifyEndpointMedia><mediaKeys confEntity=\"{focus}\" userEntity=\"{BOB}\" endpointEntity=\"av-bob\" mediaId=\"1\"/><media xmlns=\"urn:ietf:params:xml:ns:conference-info\" id=\"1\"><type>audio</type><status>recvonly</status></media></modifyEndpointMedia>"
        );
        assert_eq!(code(&f.handle(1003, BOB, &focus, &request(&focus.to_string(), BOB, 3, &mute))).0, "success");
        let out = drain(&mut f);
        assert!(
            out.contains(&Output::MediaChanged { conference: id.clone(), user: BOB.into(), muted: true }),
            "{out:?}"
        );
        assert!(f.conference(&id).unwrap().user(BOB).unwrap().av().unwrap().media[0].muted());

        // Bob may not lock; Alice may; then Carol cannot join.
        let lock = format!(
            "<modifyConferenceLock><conferenceKeys confEntity=\"{focus}\"/><locked>true</locked></modifyConferenceLock>"
        );
        assert_eq!(
            code(&f.handle(1004, BOB, &focus, &request(&focus.to_string(), BOB, 4, &lock))).1.as_deref(),
            Some("unauthorized")
        );
        assert_eq!(code(&f.handle(1004, ALICE, &focus, &request(&focus.to_string(), ALICE, 4, &lock))).0, "success");
        let carol = add_user(&mut f, &focus, "sip:carol@contoso.com");
        assert_eq!(code(&carol).1.as_deref(), Some("conferenceLocked"));
        drain(&mut f);

        // Alice ejects Bob.
        let eject = format!("<deleteUser><userKeys confEntity=\"{focus}\" userEntity=\"{BOB}\"/></deleteUser>");
        assert_eq!(code(&f.handle(1005, ALICE, &focus, &request(&focus.to_string(), ALICE, 5, &eject))).0, "success");
        let out = drain(&mut f);
        assert!(out.contains(&Output::UserRemoved { conference: id.clone(), user: BOB.into() }));
        assert!(
            out.contains(&Output::Roster { conference: id.clone(), changes: vec![UserChange::Deleted(BOB.into())] })
        );

        // Only the organizer ends it.
        let end = format!("<deleteConference><conferenceKeys confEntity=\"{focus}\"/></deleteConference>");
        assert_eq!(
            code(&f.handle(1006, BOB, &focus, &request(&focus.to_string(), BOB, 6, &end))).1.as_deref(),
            Some("unauthorized")
        );
        assert_eq!(code(&f.handle(1006, ALICE, &focus, &request(&focus.to_string(), ALICE, 6, &end))).0, "success");
        assert_eq!(drain(&mut f), [Output::Ended(id.clone()), Output::Remove(id.clone())]);
        assert!(f.conference(&id).is_none());
    }

    #[test]
    fn unknown_conference_commands_and_expiry() {
        let (mut f, focus) = created();
        let id = focus.id.clone().unwrap();
        let ghost = ConfUri::of(ALICE, ConfKind::Focus, "NOSUCHCONF1");
        assert_eq!(code(&add_user(&mut f, &ghost, BOB)).1.as_deref(), Some("conferenceDoesNotExist"));
        let other = request(&focus.to_string(), BOB, 9, "<inviteEveryone/>");
        assert_eq!(code(&f.handle(1000, BOB, &focus, &other)).1.as_deref(), Some("requestMalformed"));
        // Expiry ends an empty conference.
        let expires = f.conference(&id).unwrap().expires_at.unwrap();
        assert_eq!(f.poll_timeout(), Some(expires));
        f.handle_timeout(expires - 1);
        assert!(f.conference(&id).is_some());
        f.handle_timeout(expires);
        assert!(f.conference(&id).is_none());
        assert_eq!(drain(&mut f), [Output::Ended(id.clone()), Output::Remove(id)]);
    }

    #[test]
    fn a_standard_client_dialing_the_mcu_joins_and_leaves() {
        let (mut f, focus) = created();
        let id = focus.id.unwrap();
        f.media_joined(1000, &id, "sip:dave@example.org", "Dave", "av-dave", Some(7)).unwrap();
        assert_eq!(f.conference(&id).unwrap().user("sip:dave@example.org").unwrap().display_text, "Dave");
        f.set_src_id(&id, "sip:dave@example.org", 9).unwrap();
        f.set_dominant(&id, Some("sip:dave@example.org")).unwrap();
        assert_eq!(f.conference(&id).unwrap().dominant.as_deref(), Some("sip:dave@example.org"));
        let doc = f.conference(&id).unwrap().full_document(1);
        assert!(doc.contains("<src-id>9</src-id>") && doc.contains("src-id=\"9\""), "{doc}");
        assert!(f.set_dominant(&id, Some("sip:nobody@example.org")).is_err());
        let c = f.conference(&id).unwrap();
        assert_eq!(c.user("sip:dave@example.org").unwrap().endpoints.len(), 1);
        f.media_left(&id, "sip:dave@example.org").unwrap();
        assert!(f.conference(&id).unwrap().users.is_empty());
        assert_eq!(f.conference(&id).unwrap().dominant, None, "leaving ends being dominant");
    }
}
