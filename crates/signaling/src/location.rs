//! The location service (RFC 3261 §10.3): every live binding by address of record, the flow each one
//! registered over (so requests reach a client through its own connection or NAT binding, RFC 5626 §5.3),
//! and the temporary GRUUs (RFC 5627 §3.2) minted for them.

use std::collections::HashMap;
use std::net::SocketAddr;

use vienna_crypto::hmac_sha256;
use vienna_sip::transaction::Peer;
use vienna_sip::{SipUri, Transport};
use vienna_store::Binding;

/// Live bindings in memory; the store holds the durable copy.
#[derive(Debug, Default)]
pub struct Location {
    by_aor: HashMap<String, Vec<Binding>>,
    /// `user@host:port` of a registered contact URI → the flow it registered over.
    flows: HashMap<String, Peer>,
    /// Temporary GRUU token → (address of record, instance).
    temp_gruus: HashMap<String, (String, String)>,
    gruu_key: [u8; 32],
    total: usize,
}

/// `udp:127.0.0.1:5062`: how a flow is written in [`Binding::received`].
pub fn flow_to_string(peer: Peer) -> String {
    format!("{}:{}", peer.transport.as_str().to_ascii_lowercase(), peer.addr)
}

/// Parses [`flow_to_string`]'s format.
pub fn parse_flow(s: &str) -> Option<Peer> {
    let (transport, addr) = s.split_once(':')?;
    let transport = Transport::from_via(transport)?;
    let addr: SocketAddr = addr.parse().ok()?;
    Some(Peer { transport, addr })
}

/// The key a contact URI and a later Request-URI naming the same client share.
fn target_key(uri: &SipUri) -> String {
    let port = uri.port.unwrap_or(if uri.secure { 5061 } else { 5060 });
    format!("{}@{}:{}", uri.user_unescaped().unwrap_or_default(), uri.host.to_ascii_lowercase(), port)
}

impl Location {
    /// An empty location service; `gruu_key` signs temporary GRUUs (random, kept for the process life).
    pub fn new(gruu_key: [u8; 32]) -> Self {
        Location { gruu_key, ..Default::default() }
    }

    /// Loads bindings read from the store at start.
    pub fn load(&mut self, bindings: Vec<Binding>) {
        let mut by_aor: HashMap<String, Vec<Binding>> = HashMap::new();
        for b in bindings {
            by_aor.entry(b.aor.clone()).or_default().push(b);
        }
        for (aor, list) in by_aor {
            self.replace(&aor, list);
        }
    }

    /// Live bindings of `aor` at `unix`.
    pub fn bindings<'a>(&'a self, aor: &str, unix: u64) -> impl Iterator<Item = &'a Binding> + 'a {
        self.by_aor.get(aor).into_iter().flatten().filter(move |b| b.expires_at > unix as i64)
    }

    /// Every binding of `aor`, expired or not (the registrar compares Call-ID and CSeq with them).
    pub fn all_of(&self, aor: &str) -> &[Binding] {
        self.by_aor.get(aor).map_or(&[], Vec::as_slice)
    }

    /// Every binding, by address of record.
    pub fn iter(&self) -> impl Iterator<Item = &Binding> {
        self.by_aor.values().flatten()
    }

    /// Number of bindings held.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether no binding is held.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Sets the bindings of `aor` to `list`.
    pub fn replace(&mut self, aor: &str, list: Vec<Binding>) {
        // A refresh that changes nothing the indexes derive from (the usual REGISTER): swap the list only.
        if let Some(old) = self.by_aor.get_mut(aor)
            && !list.is_empty()
            && old.len() == list.len()
            && old.iter().zip(&list).all(|(a, b)| same_index(a, b))
        {
            *old = list;
            return;
        }
        if let Some(old) = self.by_aor.remove(aor) {
            self.total -= old.len();
            for b in &old {
                self.unindex(b);
            }
        }
        if list.is_empty() {
            return;
        }
        for b in &list {
            self.index(b);
        }
        self.total += list.len();
        self.by_aor.insert(aor.to_owned(), list);
    }

    fn index(&mut self, b: &Binding) {
        if let (Some(uri), Some(peer)) = (contact_uri(&b.contact), binding_peer(b)) {
            self.flows.insert(target_key(&uri), peer);
        }
        if let Some(instance) = &b.instance_id {
            let token = self.temp_gruu_token(&b.aor, instance, &b.call_id);
            self.temp_gruus.insert(token, (b.aor.clone(), instance.clone()));
        }
    }

    fn unindex(&mut self, b: &Binding) {
        if let Some(uri) = contact_uri(&b.contact) {
            self.flows.remove(&target_key(&uri));
        }
        if let Some(instance) = &b.instance_id {
            let token = self.temp_gruu_token(&b.aor, instance, &b.call_id);
            self.temp_gruus.remove(&token);
        }
    }

    /// Drops bindings expired at `unix`; returns them (the caller removes them from the store).
    pub fn sweep(&mut self, unix: u64) -> Vec<Binding> {
        let expired_aors: Vec<String> = self
            .by_aor
            .iter()
            .filter(|(_, list)| list.iter().any(|b| b.expires_at <= unix as i64))
            .map(|(aor, _)| aor.clone())
            .collect();
        let mut gone = Vec::new();
        for aor in expired_aors {
            let list = self.by_aor.get(&aor).cloned().unwrap_or_default();
            let (live, dead): (Vec<_>, Vec<_>) = list.into_iter().partition(|b| b.expires_at > unix as i64);
            self.replace(&aor, live);
            gone.extend(dead);
        }
        gone
    }

    /// Where a registered contact `uri` is reached (see [`binding_peer`]).
    pub fn flow_for(&self, uri: &SipUri) -> Option<Peer> {
        self.flows.get(&target_key(uri)).copied()
    }

    /// The token of the temporary GRUU of one registration: it changes with the registration's Call-ID
    /// and cannot be linked to the address of record by others (RFC 5627 §3.2).
    pub fn temp_gruu_token(&self, aor: &str, instance: &str, call_id: &str) -> String {
        let mac = hmac_sha256(&self.gruu_key, &[aor.as_bytes(), b"\0", instance.as_bytes(), b"\0", call_id.as_bytes()]);
        hex::encode(&mac[..12])
    }

    /// The address of record and instance a temporary GRUU token stands for.
    pub fn resolve_temp_gruu(&self, token: &str) -> Option<(&str, &str)> {
        self.temp_gruus.get(token).map(|(a, i)| (a.as_str(), i.as_str()))
    }
}

/// Whether bindings `a` and `b` (of one address of record) give the same flow and temporary GRUU entries:
/// [`binding_peer`] reads contact, received and reg-id, the GRUU token instance and Call-ID.
fn same_index(a: &Binding, b: &Binding) -> bool {
    a.contact == b.contact
        && a.received == b.received
        && a.reg_id == b.reg_id
        && a.instance_id == b.instance_id
        && (a.instance_id.is_none() || a.call_id == b.call_id)
}

/// Where requests for binding `b` go: over the flow its REGISTER came on when that is a connection (TCP,
/// TLS: the client's listening port is usually not reachable) or the client uses outbound (RFC 5626
/// reg-id); to the Contact address otherwise (UDP, RFC 3261 §16.5), or over the flow when the Contact
/// names no address that can be reached directly.
pub fn binding_peer(b: &Binding) -> Option<Peer> {
    let flow = b.received.as_deref().and_then(parse_flow);
    let direct = contact_uri(&b.contact).as_ref().and_then(crate::routing::uri_peer);
    match flow {
        Some(flow) if flow.transport != Transport::Udp || b.reg_id.is_some() => Some(flow),
        _ => direct.or(flow),
    }
}

/// The SIP URI of a stored contact, if it is one.
pub fn contact_uri(contact: &str) -> Option<SipUri> {
    match vienna_sip::Uri::parse(contact) {
        Ok(vienna_sip::Uri::Sip(u)) => Some(u),
        _ => None,
    }
}
