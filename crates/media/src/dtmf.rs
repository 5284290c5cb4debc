//! DTMF and other named telephone events in RTP (RFC 4733 §2.3): payload parsing and a receiver that
//! turns the repeated packets of one event into one [`DtmfEvent`].
//!
//! Each event is sent as several packets with the same RTP timestamp and a growing duration, the last
//! three with the E bit. The receiver reports an event once, on its first E packet, or, when every end
//! packet was lost, when the next event starts (RFC 4733 §2.5.2.2 leaves the exact rule to the receiver).
//! Left out: sending events, and the RFC 4733 §2.6 long-event (duration wrap) handling beyond 16 bits.

use crate::Error;

/// One telephone-event payload (RFC 4733 §2.3, Figure 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0–9 digits, 10 `*`, 11 `#`, 12–15 A–D, 16 flash.
    pub event: u8,
    /// The E bit: the event has ended.
    pub end: bool,
    /// Power level, 0 to −63 dBm0 (as a positive number).
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first 4 bytes of `payload` (RFC 4733 allows several events per packet; the rest are
    /// redundant copies of earlier ones and are ignored).
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, Error> {
        if payload.len() < 4 {
            return Err(Error::Truncated);
        }
        Ok(TelephoneEvent {
            event: payload[0],
            end: payload[1] & 0x80 != 0,
            volume: payload[1] & 0x3f,
            duration: u16::from_be_bytes([payload[2], payload[3]]),
        })
    }

    /// Writes the 4-byte payload.
    pub fn write(&self, out: &mut [u8; 4]) {
        out[0] = self.event;
        out[1] = (u8::from(self.end) << 7) | (self.volume & 0x3f);
        out[2..4].copy_from_slice(&self.duration.to_be_bytes());
    }

    /// The event as a DTMF character, if it is one (0–9, `*`, `#`, A–D).
    pub fn digit(&self) -> Option<char> {
        b"0123456789*#ABCD".get(usize::from(self.event)).map(|&b| b as char)
    }
}

/// One complete event, reported once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DtmfEvent {
    /// Event code.
    pub event: u8,
    /// RTP timestamp of the event's start.
    pub timestamp: u32,
    /// Duration, in RTP timestamp units.
    pub duration: u16,
}

impl DtmfEvent {
    /// The DTMF character, if it is one.
    pub fn digit(&self) -> Option<char> {
        TelephoneEvent { event: self.event, end: true, volume: 0, duration: self.duration }.digit()
    }
}

/// Folds the packets of each event into one report.
#[derive(Clone, Debug, Default)]
pub struct DtmfReceiver {
    current: Option<(u32, TelephoneEvent)>,
    reported: Option<u32>,
}

impl DtmfReceiver {
    /// Feeds one telephone-event packet; returns an event that is now complete, if any.
    pub fn handle(&mut self, timestamp: u32, payload: &[u8]) -> Result<Option<DtmfEvent>, Error> {
        let ev = TelephoneEvent::parse(payload)?;
        let mut out = None;
        if let Some((ts, prev)) = self.current
            && ts != timestamp
            && self.reported != Some(ts)
        {
            // The previous event's end packets never came.
            out = Some(DtmfEvent { event: prev.event, timestamp: ts, duration: prev.duration });
            self.reported = Some(ts);
        }
        if self.reported == Some(timestamp) {
            return Ok(out); // a repeated end packet of an event already reported
        }
        self.current = Some((timestamp, ev));
        if ev.end {
            self.reported = Some(timestamp);
            return Ok(Some(DtmfEvent { event: ev.event, timestamp, duration: ev.duration }));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(event: u8, end: bool, duration: u16) -> [u8; 4] {
        let mut b = [0u8; 4];
        TelephoneEvent { event, end, volume: 10, duration }.write(&mut b);
        b
    }

    #[test]
    fn parses_rfc4733_payload() {
        let e = TelephoneEvent::parse(&[11, 0x8a, 0x03, 0x20]).unwrap();
        assert_eq!(e, TelephoneEvent { event: 11, end: true, volume: 10, duration: 800 });
        assert_eq!(e.digit(), Some('#'));
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), Err(Error::Truncated));
        assert_eq!(TelephoneEvent { event: 16, end: false, volume: 0, duration: 0 }.digit(), None);
    }

    #[test]
    fn one_report_per_event_even_with_three_end_packets() {
        let mut r = DtmfReceiver::default();
        assert_eq!(r.handle(1000, &packet(5, false, 160)).unwrap(), None);
        assert_eq!(r.handle(1000, &packet(5, false, 320)).unwrap(), None);
        let done = r.handle(1000, &packet(5, true, 480)).unwrap().unwrap();
        assert_eq!((done.digit(), done.duration), (Some('5'), 480));
        assert_eq!(r.handle(1000, &packet(5, true, 480)).unwrap(), None);
        assert_eq!(r.handle(1000, &packet(5, true, 480)).unwrap(), None);
    }

    #[test]
    fn lost_end_packets_report_at_the_next_event() {
        let mut r = DtmfReceiver::default();
        r.handle(1000, &packet(1, false, 320)).unwrap();
        let first = r.handle(5000, &packet(2, false, 160)).unwrap().unwrap();
        assert_eq!((first.digit(), first.timestamp, first.duration), (Some('1'), 1000, 320));
        assert_eq!(r.handle(5000, &packet(2, true, 400)).unwrap().unwrap().digit(), Some('2'));
    }
}
