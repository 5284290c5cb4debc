//! `vienna-load conference --join sip` against a real `vienna serve` with its SIP role and MCU: the
//! conference focus admits every participant over SIP. A test binary of its own, so its server and load
//! do not share the machine with the real-time bridge tests of `conference.rs`. Bounded by `--duration`;
//! the test asserts counts, never wall time.

mod common;

use common::{add_user, http_get, serve, settings, vienna_load};

/// Joining through the conference focus over SIP: the conference is created by the admin API, every
/// participant INVITEs its dial-in URI with Digest credentials, and the mix is checked as with the admin
/// join; the server's own counters confirm the path.
#[test]
fn participants_join_through_the_conference_focus_over_sip() {
    let dir = tempfile::tempdir().expect("temp dir");
    for i in 0..4 {
        add_user(dir.path(), &format!("user{i}"), &format!("pw-user{i}"));
    }
    let args = settings(&[
        "turn.enabled=false",
        "sip.udp_port=0",
        "sip.tcp=false",
        "sip.tls=false",
        "mcu.enabled=true",
        "mcu.workers=1",
    ]);
    let (mut child, listeners) = serve(dir.path(), &args);
    let (admin, sip) = (listeners["admin/http"].to_string(), listeners["sip/udp"].to_string());
    let run = vienna_load(
        &["conference", "--join", "sip", "--admin", &admin, "--sip", &sip, "--participants", "4", "--duration", "5"],
        None,
    );
    run.assert_success();
    let j = &run.json;
    assert_eq!(j["config"]["join"], "sip");
    assert_eq!(j["join"]["ok"], 4);
    assert_eq!(j["join"]["left"], 4, "every participant leaves with BYE");
    assert_eq!(j["received"]["silent_participants"], 0);
    let m = &j["mix"];
    assert_eq!(m["checked"], 4);
    assert_eq!(m["seconds_ok"], m["seconds"], "every second has the other talkers and not the own tone: {m}");
    let sip_view: serde_json::Value = serde_json::from_str(&http_get(listeners["admin/http"], "/api/v1/sip")).unwrap();
    assert!(sip_view["auth"]["challenges"].as_u64().unwrap() >= 4, "each INVITE was challenged: {sip_view}");
    assert_eq!(sip_view["auth"]["failures"], 0, "{sip_view}");
    let list: serde_json::Value =
        serde_json::from_str(&http_get(listeners["admin/http"], "/api/v1/conferences")).unwrap();
    let list = list.as_array().expect("a list of conferences");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["subject"], "vienna-load");
    let _ = child.kill();
    let _ = child.wait();
}
