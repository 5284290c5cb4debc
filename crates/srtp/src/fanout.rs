//! Fan-out of one outbound RTP stream (a mix) to many receivers, for the mixer.
//!
//! - [`ScaleGroup`]: Scale SRTP (MS-SSRTP). Every member shares one key, so the stream is encrypted once and
//!   the same bytes go to every member's address. One sender context, one SSRC, one sequence and ROC.
//! - Per-receiver legs: the standard path, one [`SrtpSender`] per receiver, for clients whose key is their
//!   own (`a=crypto`), which is every client as long as the Microsoft specifics stay unconfirmed.
//! - Plain receivers (policy "no encryption") get the plaintext.
//!
//! [`FanOut::protect_rtp`] takes the plaintext in a caller-owned buffer, encrypts it in place for the
//! group, writes the per-receiver copies into buffers the fan-out owns and reuses, and returns [`Fanned`]:
//! one shared buffer with its address list, and one buffer per other receiver. Nothing is allocated per
//! packet; Scale SRTP's cost does not grow with the number of members.
//!
//! Membership and keys (MS-SSRTP's purpose; the packet rules are **UNCONFIRMED**, see the research notes
//! §5.3). This module follows RFC 3711: a receiver that joins late starts its context at ROC 0 (§3.3.1), so it
//! can join on the current key only while the group's stream has not wrapped its sequence number
//! ([`Membership::CurrentKey`]); otherwise the group must re-key first ([`Membership::RekeyFirst`]). A
//! member that leaves still knows the key, so by default leaving asks for a re-key too. Re-keying is two
//! steps because the new key reaches members by re-INVITE: [`ScaleGroup::prepare_rekey`] makes the next
//! key (and the next MKI, which lets members hold both keys while the re-INVITEs go out), and
//! [`ScaleGroup::commit_rekey`] switches the stream to it. A new key starts a new context: ROC 0.

use std::net::SocketAddr;

use crate::context::SrtpSender;
use crate::sdes::Mki;
use crate::suite::MasterKey;
use crate::{Error, Result, TRAILER_ROOM};

/// A receiver of a fan-out, named by the mixer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReceiverId(pub u64);

/// What a member joining a [`ScaleGroup`] can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// The current key works for the newcomer: signal it.
    CurrentKey,
    /// The stream has wrapped (ROC > 0): a late joiner could not authenticate it. Re-key the group
    /// ([`ScaleGroup::prepare_rekey`]) and signal the new key to everyone.
    RekeyFirst,
}

/// When membership changes ask for a new group key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalePolicy {
    /// Re-key when a member leaves (it knows the key): forward secrecy for those who stay. Default on.
    pub rekey_on_leave: bool,
}

impl Default for ScalePolicy {
    fn default() -> Self {
        ScalePolicy { rekey_on_leave: true }
    }
}

/// One Scale SRTP stream: a shared key, one sender context, its members' addresses.
#[derive(Debug)]
pub struct ScaleGroup {
    sender: SrtpSender,
    pending: Option<(MasterKey, Option<Mki>)>,
    lifetime: Option<u64>,
    members: Vec<ReceiverId>,
    addresses: Vec<SocketAddr>,
    policy: ScalePolicy,
    rekey_wanted: bool,
    generation: u64,
}

impl ScaleGroup {
    /// A group sending with `key` (and `mki`), members added with [`ScaleGroup::join`].
    pub fn new(key: &MasterKey, mki: Option<Mki>, lifetime: Option<u64>, policy: ScalePolicy) -> Result<Self> {
        Ok(ScaleGroup {
            sender: SrtpSender::new(key, mki, lifetime)?,
            pending: None,
            lifetime,
            members: Vec::new(),
            addresses: Vec::new(),
            policy,
            rekey_wanted: false,
            generation: 0,
        })
    }

    /// The key members must have (the one in the answer's `a=cryptoscale`).
    pub fn key(&self) -> &MasterKey {
        self.sender.key()
    }

    /// The MKI packets carry.
    pub fn mki(&self) -> Option<Mki> {
        self.sender.mki()
    }

    /// How many times the group has re-keyed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The prepared next key, if any (signal it to every member, then [`ScaleGroup::commit_rekey`]).
    pub fn pending_key(&self) -> Option<(&MasterKey, Option<Mki>)> {
        self.pending.as_ref().map(|(k, m)| (k, *m))
    }

    /// Adds (or moves) a member; says whether the current key serves it.
    pub fn join(&mut self, id: ReceiverId, address: SocketAddr) -> Membership {
        match self.members.iter().position(|m| *m == id) {
            Some(i) => self.addresses[i] = address,
            None => {
                self.members.push(id);
                self.addresses.push(address);
            }
        }
        let wrapped = self.sender.last_ssrc().and_then(|ssrc| self.sender.roc(ssrc)).is_some_and(|roc| roc > 0);
        if wrapped {
            self.rekey_wanted = true;
            Membership::RekeyFirst
        } else {
            Membership::CurrentKey
        }
    }

    /// Removes a member; `true` if it was one. With [`ScalePolicy::rekey_on_leave`] the group then wants a
    /// re-key ([`ScaleGroup::rekey_wanted`]).
    pub fn leave(&mut self, id: ReceiverId) -> bool {
        let Some(i) = self.members.iter().position(|m| *m == id) else { return false };
        self.members.swap_remove(i);
        self.addresses.swap_remove(i);
        if self.policy.rekey_on_leave {
            self.rekey_wanted = true;
        }
        true
    }

    /// Members, in the order of [`ScaleGroup::addresses`].
    pub fn members(&self) -> &[ReceiverId] {
        &self.members
    }

    /// Every member's address: the destinations of the shared packet.
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    /// Whether a membership change or the key's lifetime calls for a new key.
    pub fn rekey_wanted(&self) -> bool {
        self.rekey_wanted || self.sender.needs_rekey()
    }

    /// Makes the next group key (random) and MKI (the current value plus one, skipping 0, when the group
    /// uses MKIs) and keeps it pending; returns it for the re-INVITEs. Calling it again replaces the pending
    /// key.
    pub fn prepare_rekey(&mut self) -> Result<(MasterKey, Option<Mki>)> {
        let key = MasterKey::random(self.sender.suite())?;
        let mki = self.sender.mki().map(|m| {
            let max = if m.length >= 8 { u64::MAX } else { (1u64 << (8 * u32::from(m.length))) - 1 };
            let next = if m.value >= max { 1 } else { m.value + 1 };
            Mki { value: next, length: m.length }
        });
        self.pending = Some((key.clone(), mki));
        Ok((key, mki))
    }

    /// Switches the stream to the pending key (no-op without one); returns whether it switched.
    pub fn commit_rekey(&mut self) -> Result<bool> {
        let Some((key, mki)) = self.pending.take() else { return Ok(false) };
        self.sender.rekey(&key, mki, self.lifetime, false)?;
        self.rekey_wanted = false;
        self.generation += 1;
        Ok(true)
    }

    /// Protects `buf[..len]` in place once for every member; returns the SRTP length. The packet is
    /// `buf[..n]`, to be sent to every address in [`ScaleGroup::addresses`].
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize> {
        self.sender.protect_rtp(buf, len)
    }

    /// Protects an RTCP packet (the group's sender reports) in place for every member.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize> {
        self.sender.protect_rtcp(buf, len)
    }
}

/// A receiver on the per-receiver path (or plain), with the buffer its copy is written into.
#[derive(Debug)]
pub struct Leg {
    id: ReceiverId,
    address: SocketAddr,
    sender: Option<SrtpSender>,
    buf: Box<[u8]>,
    len: usize,
}

impl Leg {
    /// The receiver.
    pub fn id(&self) -> ReceiverId {
        self.id
    }

    /// Where its packet goes.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its packet from the last [`FanOut::protect_rtp`] (empty if that failed for it).
    pub fn packet(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// One outbound stream to a Scale SRTP group, per-receiver SRTP legs and plain legs.
#[derive(Debug)]
pub struct FanOut {
    group: Option<ScaleGroup>,
    legs: Vec<Leg>,
    max_packet: usize,
    failures: u64,
}

/// What to send after [`FanOut::protect_rtp`].
#[derive(Debug, Clone, Copy)]
pub struct Fanned<'a> {
    /// The Scale SRTP packet and every member's address (`None` without a group).
    pub shared: Option<(&'a [u8], &'a [SocketAddr])>,
    /// One packet per per-receiver or plain leg.
    pub legs: &'a [Leg],
}

impl Fanned<'_> {
    /// Every `(datagram, destination)` pair; the shared packet appears once per member.
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> + '_ {
        let shared = self.shared.into_iter().flat_map(|(p, addrs)| addrs.iter().map(move |a| (p, *a)));
        shared.chain(self.legs.iter().filter(|l| l.len > 0).map(|l| (l.packet(), l.address)))
    }

    /// How many datagrams to send.
    pub fn count(&self) -> usize {
        self.shared.map_or(0, |(_, a)| a.len()) + self.legs.iter().filter(|l| l.len > 0).count()
    }
}

impl FanOut {
    /// A fan-out for RTP packets of at most `max_packet` bytes of plaintext (per-leg buffers are sized for
    /// that plus the trailer).
    pub fn new(max_packet: usize) -> FanOut {
        FanOut { group: None, legs: Vec::new(), max_packet, failures: 0 }
    }

    /// Puts a Scale SRTP group in front (replacing any previous one).
    pub fn set_group(&mut self, group: ScaleGroup) {
        self.group = Some(group);
    }

    /// The Scale SRTP group.
    pub fn group(&self) -> Option<&ScaleGroup> {
        self.group.as_ref()
    }

    /// The Scale SRTP group, to change members and keys.
    pub fn group_mut(&mut self) -> Option<&mut ScaleGroup> {
        self.group.as_mut()
    }

    /// Adds a receiver on the per-receiver path with its own sender context (replacing one with that id).
    pub fn add_leg(&mut self, id: ReceiverId, address: SocketAddr, sender: SrtpSender) {
        self.insert(id, address, Some(sender));
    }

    /// Adds a receiver that gets plain RTP.
    pub fn add_plain(&mut self, id: ReceiverId, address: SocketAddr) {
        self.insert(id, address, None);
    }

    fn insert(&mut self, id: ReceiverId, address: SocketAddr, sender: Option<SrtpSender>) {
        self.legs.retain(|l| l.id != id);
        let room = self.max_packet + TRAILER_ROOM + crate::context::MAX_MKI_LEN;
        self.legs.push(Leg { id, address, sender, buf: vec![0; room].into_boxed_slice(), len: 0 });
    }

    /// Removes a per-receiver or plain leg.
    pub fn remove_leg(&mut self, id: ReceiverId) -> Result<()> {
        let before = self.legs.len();
        self.legs.retain(|l| l.id != id);
        if self.legs.len() == before { Err(Error::UnknownReceiver(id.0)) } else { Ok(()) }
    }

    /// The per-receiver and plain legs.
    pub fn legs(&self) -> &[Leg] {
        &self.legs
    }

    /// Per-leg protect failures so far (a leg whose key expired, for example; its packet is skipped).
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Fans out the RTP packet `buf[..len]`: copies it to each leg (encrypting with the leg's own key, or
    /// not at all for plain legs), then encrypts `buf` in place for the Scale SRTP group. `buf` needs
    /// [`TRAILER_ROOM`] + 8 spare bytes. A leg that fails is skipped and counted; a group failure is an error.
    pub fn protect_rtp<'a>(&'a mut self, buf: &'a mut [u8], len: usize) -> Result<Fanned<'a>> {
        if len > self.max_packet || len > buf.len() {
            return Err(Error::BufferTooSmall { needed: len, available: self.max_packet.min(buf.len()) });
        }
        for leg in &mut self.legs {
            leg.buf[..len].copy_from_slice(&buf[..len]);
            leg.len = match &mut leg.sender {
                None => len,
                Some(s) => match s.protect_rtp(&mut leg.buf, len) {
                    Ok(n) => n,
                    Err(_) => {
                        self.failures += 1;
                        0
                    }
                },
            };
        }
        let shared = match &mut self.group {
            Some(g) if !g.addresses.is_empty() => {
                let n = g.protect_rtp(buf, len)?;
                Some((&buf[..n], &g.addresses[..]))
            }
            _ => None,
        };
        Ok(Fanned { shared, legs: &self.legs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{ReceiverOptions, SrtpReceiver};
    use crate::suite::Suite;

    fn rtp(seq: u16, payload: usize) -> Vec<u8> {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 160, 0x11, 0x22, 0x33, 0x44]);
        p.extend(std::iter::repeat_n(0xab, payload));
        p
    }

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40000 + i))
    }

    #[test]
    fn one_ciphertext_for_every_member_and_per_receiver_legs() {
        let suite = Suite::AesCm128HmacSha1_80;
        let group_key = MasterKey::random(suite).unwrap();
        let mki = Some(Mki::new(1, 1).unwrap());
        let mut group = ScaleGroup::new(&group_key, mki, None, ScalePolicy::default()).unwrap();
        for i in 0..3 {
            assert_eq!(group.join(ReceiverId(i), addr(i as u16)), Membership::CurrentKey);
        }
        let mut fan = FanOut::new(1500);
        fan.set_group(group);
        let leg_key = MasterKey::random(suite).unwrap();
        fan.add_leg(ReceiverId(10), addr(10), SrtpSender::new(&leg_key, None, None).unwrap());
        fan.add_plain(ReceiverId(11), addr(11));

        // Every member decrypts the one shared packet with its own receiver for the group key.
        let mut members: Vec<SrtpReceiver> =
            (0..3).map(|_| SrtpReceiver::new(&group_key, mki, None, ReceiverOptions::default()).unwrap()).collect();
        let mut legacy = SrtpReceiver::new(&leg_key, None, None, ReceiverOptions::default()).unwrap();
        let mut buf = vec![0u8; 1500 + TRAILER_ROOM + 8];
        for seq in 0..20u16 {
            let plain = rtp(seq, 160);
            buf[..plain.len()].copy_from_slice(&plain);
            let out = fan.protect_rtp(&mut buf, plain.len()).unwrap();
            assert_eq!(out.count(), 5);
            let (shared, to) = out.shared.unwrap();
            assert_eq!(to, &[addr(0), addr(1), addr(2)]);
            assert_eq!(shared.len(), plain.len() + 10 + 1);
            let grams: Vec<(Vec<u8>, SocketAddr)> = out.datagrams().map(|(p, a)| (p.to_vec(), a)).collect();
            assert!(grams[..3].iter().all(|(p, _)| p == shared), "byte-identical to every member");
            for (m, (p, _)) in members.iter_mut().zip(&grams[..3]) {
                let mut p = p.clone();
                let n = m.unprotect_rtp(&mut p).unwrap();
                assert_eq!(&p[..n], &plain[..]);
            }
            let (leg_packet, leg_addr) = &grams[3];
            assert_eq!(*leg_addr, addr(10));
            assert_ne!(leg_packet[12..], shared[12..leg_packet.len()], "another key, another ciphertext");
            let mut p = leg_packet.clone();
            let n = legacy.unprotect_rtp(&mut p).unwrap();
            assert_eq!(&p[..n], &plain[..]);
            assert_eq!(grams[4], (plain.clone(), addr(11)), "plain leg gets the plaintext");
        }
        assert_eq!(fan.failures(), 0);
    }

    #[test]
    fn late_joiner_and_rekey_on_membership_change() {
        let suite = Suite::AesCm128HmacSha1_80;
        let key = MasterKey::random(suite).unwrap();
        let mki = Some(Mki::new(255, 1).unwrap());
        let mut g = ScaleGroup::new(&key, mki, None, ScalePolicy::default()).unwrap();
        g.join(ReceiverId(1), addr(1));
        let mut buf = vec![0u8; 400];
        // Run the stream across a sequence wrap: 65530 .. 65535, 0 .. 9.
        for i in 0..16u32 {
            let p = rtp((65530 + i) as u16, 20);
            buf[..p.len()].copy_from_slice(&p);
            g.protect_rtp(&mut buf, p.len()).unwrap();
        }
        assert!(!g.rekey_wanted());
        // A receiver joining now starts at ROC 0 and could not authenticate: the group must re-key.
        assert_eq!(g.join(ReceiverId(2), addr(2)), Membership::RekeyFirst);
        assert!(g.rekey_wanted());
        let (next, next_mki) = g.prepare_rekey().unwrap();
        assert_eq!(next_mki, Some(Mki { value: 1, length: 1 }), "MKI wraps past 255 to 1");
        assert_ne!(next.as_bytes(), key.as_bytes());
        assert_eq!(g.key(), &key, "still sending with the old key until commit");
        assert!(g.commit_rekey().unwrap());
        assert_eq!(g.generation(), 1);
        assert!(!g.rekey_wanted());
        // The late joiner, with the new key from its re-INVITE, decrypts the stream from here on.
        let mut late = SrtpReceiver::new(&next, next_mki, None, ReceiverOptions::default()).unwrap();
        let p = rtp(10, 20);
        buf[..p.len()].copy_from_slice(&p);
        let n = g.protect_rtp(&mut buf, p.len()).unwrap();
        let m = late.unprotect_rtp(&mut buf[..n]).unwrap();
        assert_eq!(&buf[..m], &p[..]);
        // Leaving asks for a new key (the leaver knows this one).
        assert!(g.leave(ReceiverId(1)));
        assert!(!g.leave(ReceiverId(1)));
        assert!(g.rekey_wanted());
        assert_eq!(g.members(), &[ReceiverId(2)]);
        assert!(!g.commit_rekey().unwrap(), "nothing prepared");
    }

    #[test]
    fn failures_are_counted_not_fatal() {
        let key = MasterKey::random(Suite::AesCm128HmacSha1_32).unwrap();
        let mut fan = FanOut::new(200);
        fan.add_leg(ReceiverId(1), addr(1), SrtpSender::new(&key, None, Some(1)).unwrap());
        let mut buf = vec![0u8; 200 + TRAILER_ROOM + 8];
        let p = rtp(1, 20);
        buf[..p.len()].copy_from_slice(&p);
        assert_eq!(fan.protect_rtp(&mut buf, p.len()).unwrap().count(), 1);
        buf[..p.len()].copy_from_slice(&p);
        assert_eq!(fan.protect_rtp(&mut buf, p.len()).unwrap().count(), 0, "lifetime of 1 packet used up");
        assert_eq!(fan.failures(), 1);
        assert!(fan.protect_rtp(&mut buf, 201).is_err());
        assert!(fan.remove_leg(ReceiverId(1)).is_ok());
        assert_eq!(fan.remove_leg(ReceiverId(1)), Err(Error::UnknownReceiver(1)));
    }
}
