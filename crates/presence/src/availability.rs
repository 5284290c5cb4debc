//! The presence model shared by both dialects: the MS-PRES availability scale (3500 … 18500, MS-PRES
//! §2.2.2 / the `availability` element of the OCS 2007 and Lync schemas), the six LCS states plus Offline,
//! activity tokens and the note.
//!
//! SIMPLE (PIDF/RPID, [`crate::pidf`]) and the Microsoft enhanced-presence categories (a later issue) both
//! map onto [`PresenceState`]; aggregation ([`crate::presentity`]) works on availability numbers alone, so
//! a state published in one dialect is seen correctly by watchers of the other.

use std::fmt;

/// Available / Online (MS-PRES canonical value).
pub const ONLINE: u32 = 3500;
/// Online but idle (inactive).
pub const ONLINE_IDLE: u32 = 4500;
/// Busy.
pub const BUSY: u32 = 6500;
/// Busy and idle.
pub const BUSY_IDLE: u32 = 7500;
/// Do not disturb.
pub const DO_NOT_DISTURB: u32 = 9500;
/// Be right back.
pub const BE_RIGHT_BACK: u32 = 12500;
/// Away.
pub const AWAY: u32 = 15500;
/// Offline (or appearing offline).
pub const OFFLINE: u32 = 18500;

/// Activity token of "In a meeting" (MS-PRES, RPID `meeting`).
pub const IN_A_MEETING: &str = "in-a-meeting";
/// Activity token of a call (RPID `on-the-phone`).
pub const ON_THE_PHONE: &str = "on-the-phone";
/// Activity token of a presentation (RPID `presentation`).
pub const IN_PRESENTATION: &str = "in-presentation";
/// Activity token of out of office (RPID `vacation`, `holiday`).
pub const OUT_OF_OFFICE: &str = "out-of-office";

/// The states an LCS/OCS client shows, plus Offline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Online (available), also when idle.
    Online,
    /// Busy (also in a call).
    Busy,
    /// Do not disturb (also presenting).
    DoNotDisturb,
    /// Be right back.
    BeRightBack,
    /// Away (also out of office).
    Away,
    /// In a meeting: busy with the `in-a-meeting` activity.
    InAMeeting,
    /// Offline: no endpoint signed in, appearing offline, or a blocked watcher's view.
    Offline,
}

impl State {
    /// Every state, in the order clients list them.
    pub const ALL: [State; 7] = [
        State::Online,
        State::Busy,
        State::DoNotDisturb,
        State::BeRightBack,
        State::Away,
        State::InAMeeting,
        State::Offline,
    ];

    /// The state an availability number and activity token fall in (MS-PRES ranges).
    pub fn from_availability(availability: u32, activity: Option<&str>) -> State {
        match availability {
            0..=5999 => State::Online,
            6000..=8999 if activity == Some(IN_A_MEETING) => State::InAMeeting,
            6000..=8999 => State::Busy,
            9000..=11999 => State::DoNotDisturb,
            12000..=14999 => State::BeRightBack,
            15000..=17999 => State::Away,
            _ => State::Offline,
        }
    }

    /// The canonical availability number a client publishes for this state.
    pub fn availability(self) -> u32 {
        match self {
            State::Online => ONLINE,
            State::Busy | State::InAMeeting => BUSY,
            State::DoNotDisturb => DO_NOT_DISTURB,
            State::BeRightBack => BE_RIGHT_BACK,
            State::Away => AWAY,
            State::Offline => OFFLINE,
        }
    }

    /// A stable lower-case name (`online`, `busy`, `do-not-disturb`, `be-right-back`, `away`,
    /// `in-a-meeting`, `offline`), used in the admin API and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Online => "online",
            State::Busy => "busy",
            State::DoNotDisturb => "do-not-disturb",
            State::BeRightBack => "be-right-back",
            State::Away => "away",
            State::InAMeeting => "in-a-meeting",
            State::Offline => "offline",
        }
    }

    /// Parses [`State::as_str`] names.
    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a watcher sees of a presentity, and what one endpoint published.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PresenceState {
    /// MS-PRES availability number (3500 … 18500).
    pub availability: u32,
    /// Activity token refining the availability (`in-a-meeting`, `on-the-phone`, ...), if any.
    pub activity: Option<String>,
    /// Free-text note, if any.
    pub note: Option<String>,
}

impl PresenceState {
    /// The canonical state `state` with no note.
    pub fn of(state: State) -> Self {
        let activity = (state == State::InAMeeting).then(|| IN_A_MEETING.to_owned());
        PresenceState { availability: state.availability(), activity, note: None }
    }

    /// Offline, with nothing else.
    pub fn offline() -> Self {
        PresenceState::of(State::Offline)
    }

    /// The LCS state this falls in.
    pub fn state(&self) -> State {
        State::from_availability(self.availability, self.activity.as_deref())
    }

    /// Whether the availability is one of the idle ranges (4500–5999, 7500–8999).
    pub fn idle(&self) -> bool {
        matches!(self.availability, 4500..=5999 | 7500..=8999)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_canonical_numbers() {
        for s in State::ALL {
            assert_eq!(PresenceState::of(s).state(), s);
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::from_availability(4500, None), State::Online);
        assert_eq!(State::from_availability(7500, None), State::Busy);
        assert_eq!(State::from_availability(11999, None), State::DoNotDisturb);
        assert_eq!(State::from_availability(12000, None), State::BeRightBack);
        assert_eq!(State::from_availability(17999, None), State::Away);
        assert_eq!(State::from_availability(18000, None), State::Offline);
        assert!(PresenceState { availability: ONLINE_IDLE, activity: None, note: None }.idle());
    }
}
