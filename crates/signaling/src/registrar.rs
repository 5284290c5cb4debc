//! REGISTER processing (RFC 3261 §10.3 steps 6–8, RFC 5626 §6, RFC 5627 §3): turns a request and the
//! current bindings of its address of record into the new bindings and the changes to persist, or a
//! rejection. Pure: the caller authenticates first and applies the outcome.

use std::borrow::Cow;

use vienna_sip::header::quote;
use vienna_sip::transaction::Peer;
use vienna_sip::{Contacts, HeaderName, Request};
use vienna_store::{Binding, BindingChange};

use crate::config::CoreConfig;
use crate::location::flow_to_string;

/// What a REGISTER does.
#[derive(Debug)]
pub enum Outcome {
    /// Accepted: the address of record's bindings afterwards, and what changed.
    Accepted {
        /// Every binding after the request (expired ones dropped).
        bindings: Vec<Binding>,
        /// Changes for the store, in order.
        changes: Vec<BindingChange>,
    },
    /// Refused with `status` and a reason phrase; `min_expires` goes into a 423.
    Rejected {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: &'static str,
        /// Min-Expires for a 423.
        min_expires: Option<u32>,
    },
}

fn reject(status: u16, reason: &'static str) -> Outcome {
    Outcome::Rejected { status, reason, min_expires: None }
}

/// Which existing binding a contact replaces: same instance (and reg-id) when it has one (RFC 5626 §6),
/// otherwise the same contact URI.
fn same_binding(b: &Binding, contact: &str, instance: Option<&str>, reg_id: Option<u32>) -> bool {
    match instance {
        Some(i) => b.instance_id.as_deref() == Some(i) && b.reg_id == reg_id,
        None => b.instance_id.is_none() && b.contact == contact,
    }
}

/// Applies REGISTER `req` for `aor`, received over `flow` at Unix time `unix`, to `current`.
pub fn register(config: &CoreConfig, aor: &str, req: &Request, flow: Peer, current: &[Binding], unix: u64) -> Outcome {
    let (Ok(contacts), Ok(header_expires), Ok(call_id), Ok(cseq)) =
        (req.headers.contacts(), req.headers.expires(), req.headers.call_id(), req.headers.cseq())
    else {
        return reject(400, "Malformed Contact, Expires, Call-ID or CSeq");
    };
    let now = unix as i64;
    // Borrowed until kept: the binding a refresh replaces is never copied.
    let mut bindings: Vec<Cow<'_, Binding>> =
        current.iter().filter(|b| b.expires_at > now).map(Cow::Borrowed).collect();
    let mut changes: Vec<BindingChange> = current.iter().filter(|b| b.expires_at <= now).map(remove_change).collect();
    // §10.3 step 7: a binding last written by this Call-ID with a CSeq not lower than this one means the
    // request is stale or out of order.
    let out_of_order = |b: &Binding| b.call_id == call_id && b.cseq >= cseq.seq;
    match contacts {
        Contacts::Wildcard => {
            if header_expires != Some(0) {
                return reject(400, "Contact: * requires Expires: 0");
            }
            if bindings.iter().any(|b| out_of_order(b)) {
                return reject(500, "Out of order REGISTER");
            }
            changes.extend(bindings.drain(..).map(|b| remove_change(&b)));
        }
        Contacts::List(list) => {
            let user_agent = req.headers.get(&HeaderName::UserAgent).map(str::to_owned);
            let path: Vec<String> = req.headers.values(&HeaderName::Path).map(str::to_owned).collect();
            // Check every contact before changing anything: a 423 or 400 leaves the bindings untouched.
            let mut wanted = Vec::with_capacity(list.len());
            for c in &list {
                if c.uri.as_sip().is_none() {
                    return reject(400, "Contact URI scheme not supported");
                }
                let expires = c.expires().or(header_expires).unwrap_or(config.default_expires);
                if expires != 0 && expires < config.min_expires {
                    return Outcome::Rejected {
                        status: 423,
                        reason: "Interval Too Brief",
                        min_expires: Some(config.min_expires),
                    };
                }
                wanted.push((c, expires.min(config.max_expires)));
            }
            for (c, expires) in wanted {
                let contact = c.uri.to_string();
                // A Microsoft client that sends an epid but no +sip.instance gets the instance MS-SIPRE §4.2
                // derives from the epid (the one it would send).
                let instance = c.instance().map(|i| i.into_owned()).or_else(|| {
                    let from = req.headers.get(&HeaderName::From)?;
                    let epid = crate::msclient::epid::epid_of(from)?;
                    Some(format!("<urn:uuid:{}>", crate::msclient::epid::instance_from_epid(epid)))
                });
                let reg_id = c.reg_id();
                let existing = bindings.iter().position(|b| same_binding(b, &contact, instance.as_deref(), reg_id));
                if let Some(i) = existing {
                    if out_of_order(&bindings[i]) {
                        return reject(500, "Out of order REGISTER");
                    }
                    let old = bindings.remove(i);
                    if expires == 0 || old.contact != contact {
                        changes.push(remove_change(&old));
                    }
                }
                if expires == 0 {
                    continue;
                }
                let binding = Binding {
                    aor: aor.to_owned(),
                    contact,
                    instance_id: instance,
                    reg_id,
                    call_id: call_id.to_owned(),
                    cseq: cseq.seq,
                    expires_at: now + i64::from(expires),
                    q: c.q_millis(),
                    received: Some(flow_to_string(flow)),
                    path: path.clone(),
                    user_agent: user_agent.clone(),
                    updated_at: now,
                };
                changes.push(BindingChange::Put(binding.clone()));
                bindings.push(Cow::Owned(binding));
            }
            if bindings.len() > config.max_contacts {
                return reject(403, "Too Many Registered Contacts");
            }
        }
    }
    Outcome::Accepted { bindings: bindings.into_iter().map(Cow::into_owned).collect(), changes }
}

fn remove_change(b: &Binding) -> BindingChange {
    BindingChange::Remove { aor: b.aor.clone(), contact: b.contact.clone() }
}

/// The Contact value listing `b` in a REGISTER 200 OK: the URI, its remaining lifetime and, for a
/// client that supports GRUU and sent an instance, its public and temporary GRUUs (RFC 5627 §5.3).
pub fn contact_value(b: &Binding, unix: u64, gruus: Option<(&str, &str)>) -> String {
    let remaining = (b.expires_at - unix as i64).max(0);
    // The contact is stored as the registrar wrote it, from a parsed URI (`Uri`'s Display): no need to
    // parse it again.
    let mut v = String::with_capacity(b.contact.len() + 24);
    v.push('<');
    v.push_str(&b.contact);
    v.push_str(">;expires=");
    v.push_str(&remaining.to_string());
    if let Some(instance) = &b.instance_id {
        v.push_str(";+sip.instance=");
        v.push_str(&quote(instance));
        if let Some(reg_id) = b.reg_id {
            v.push_str(&format!(";reg-id={reg_id}"));
        }
        if let Some((public, temporary)) = gruus {
            v.push_str(&format!(";pub-gruu={};temp-gruu={}", quote(public), quote(temporary)));
        }
    }
    v
}

/// The public GRUU of `aor` for `instance` (RFC 5627 §3.1): the AOR with `gr` set to the instance URN.
pub fn public_gruu(aor: &str, instance: &str) -> String {
    let urn = instance.trim_start_matches('<').trim_end_matches('>');
    format!("{aor};gr={urn}")
}

/// The temporary GRUU for `token` in `domain`.
pub fn temporary_gruu(token: &str, domain: &str) -> String {
    format!("sip:tgruu.{token}@{domain};gr")
}
