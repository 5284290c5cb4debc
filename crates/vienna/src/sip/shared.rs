//! What the SIP core thread publishes for `/metrics` and the admin API: a snapshot written a few times a
//! second, never per message.

use std::sync::Mutex;

use vienna_signaling::Counters;

/// The driver's own counters (the core's are in [`SipStats::core`]).
#[derive(Debug, Clone, Default)]
pub struct DriverCounters {
    /// UDP datagrams received.
    pub datagrams_in: u64,
    /// Messages received on TCP and TLS connections.
    pub stream_messages_in: u64,
    /// Messages sent (datagrams, or frames queued to a connection).
    pub messages_out: u64,
    /// Messages that could not be sent: socket error, full write queue, or no connection to answer on.
    pub send_failures: u64,
    /// Store writes of binding changes (one per batch of messages).
    pub store_writes: u64,
    /// Binding changes written.
    pub bindings_written: u64,
    /// Store writes that failed (the answers waiting on them were not sent).
    pub store_errors: u64,
    /// With write-back: binding changes dropped after repeated failed writes.
    pub bindings_dropped: u64,
    /// Outbound TCP connections opened to reach a contact.
    pub connects: u64,
    /// Outbound TCP connections that failed.
    pub connect_failures: u64,
}

/// One snapshot of the SIP role.
#[derive(Debug, Clone, Default)]
pub struct SipStats {
    /// Registrar and proxy counters.
    pub core: Counters,
    /// Transaction layer counters.
    pub transactions: vienna_sip::transaction::Counters,
    /// Transactions alive.
    pub live_transactions: usize,
    /// Completed non-INVITE transactions over UDP kept as their response until Timer J.
    pub completed_transactions: usize,
    /// Registered contacts alive.
    pub bindings: usize,
    /// TCP and TLS connections open.
    pub connections: usize,
    /// The driver's counters.
    pub driver: DriverCounters,
    /// Presence agent counters.
    pub presence: vienna_presence::Counters,
    /// Live presence subscriptions.
    pub subscriptions: usize,
    /// Presentities known (published or registered).
    pub presentities: usize,
    /// Live publications.
    pub publications: usize,
    /// Microsoft clients: NTLM, self subscriptions, categories.
    pub ms: vienna_signaling::msclient::MsCounters,
    /// NTLM security associations established now.
    pub ntlm_associations: usize,
    /// Microsoft subscriptions alive.
    pub ms_subscriptions: usize,
}

/// State shared by the core thread, the admin API and the metrics endpoint.
#[derive(Default)]
pub struct SipShared {
    /// The latest snapshot.
    pub stats: Mutex<SipStats>,
    /// Presentities for the admin API (refreshed about once a second, at most 1000).
    pub presence_views: Mutex<Vec<vienna_presence::PresentityView>>,
}

impl SipShared {
    /// The latest snapshot.
    pub fn snapshot(&self) -> SipStats {
        match self.stats.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The latest snapshot as the admin API shows it (`/api/v1/sip`).
    pub fn to_json(&self) -> serde_json::Value {
        let s = self.snapshot();
        let c = &s.core;
        let t = &s.transactions;
        let d = &s.driver;
        serde_json::json!({
            "transactions": s.live_transactions,
            "completed_transactions": s.completed_transactions,
            "bindings": s.bindings,
            "connections": s.connections,
            "requests": c.requests,
            "responses_by_class": {
                "1xx": c.responses[0], "2xx": c.responses[1], "3xx": c.responses[2],
                "4xx": c.responses[3], "5xx": c.responses[4], "6xx": c.responses[5],
            },
            "auth": { "challenges": c.auth_challenges, "failures": c.auth_failures, "replays": c.auth_replays },
            "registrations": {
                "accepted": c.registrations_accepted,
                "rejected": c.registrations_rejected,
                "expired": c.bindings_expired,
            },
            "routing": {
                "routed": c.routed, "branches": c.branches, "forks_won": c.forks_won, "cancels": c.cancels,
                "acks_forwarded": c.acks_forwarded, "branch_timeouts": c.branch_timeouts,
                "branch_transport_errors": c.branch_transport_errors, "loops": c.loops,
            },
            "transaction_layer": {
                "client_created": t.client_created, "server_created": t.server_created,
                "retransmissions_sent": t.retransmissions_sent, "retransmissions_absorbed": t.retransmissions_absorbed,
                "parse_errors": t.parse_errors, "timeouts": t.timeouts, "overload_rejected": t.overload_rejected,
            },
            "transport": {
                "datagrams_in": d.datagrams_in, "stream_messages_in": d.stream_messages_in,
                "messages_out": d.messages_out, "send_failures": d.send_failures + c.send_errors,
                "connects": d.connects, "connect_failures": d.connect_failures,
            },
            "store": {
                "writes": d.store_writes, "bindings_written": d.bindings_written, "errors": d.store_errors,
                "bindings_dropped": d.bindings_dropped,
            },
            "microsoft": {
                "ntlm": {
                    "associations": s.ntlm_associations, "challenges": s.ms.ntlm.challenges,
                    "established": s.ms.ntlm.established, "verified": s.ms.ntlm.verified, "signed": s.ms.ntlm.signed,
                    "refused": {
                        "malformed": s.ms.ntlm.refused_malformed, "unknown_user": s.ms.ntlm.refused_unknown_user,
                        "password": s.ms.ntlm.refused_password, "signature": s.ms.ntlm.refused_signature,
                        "replay": s.ms.ntlm.refused_replay, "association": s.ms.ntlm.refused_association,
                    },
                },
                "subscriptions": s.ms_subscriptions,
                "self_subscriptions": s.ms.self_subscriptions, "presence_subscriptions": s.ms.presence_subscriptions,
                "benotifies": s.ms.benotifies, "notifies": s.ms.notifies, "publications": s.ms.publications,
                "version_conflicts": s.ms.version_conflicts, "edits": s.ms.edits, "bad_bodies": s.ms.bad_bodies,
                "deregistrations": s.ms.deregistrations,
                "im_gateway": {
                    "live": s.ms.im_gateway.live, "sessions": s.ms.im_gateway.sessions,
                    "refused_full": s.ms.im_gateway.sessions_refused_full,
                    "delivered": s.ms.im_gateway.delivered, "delivery_failures": s.ms.im_gateway.delivery_failures,
                    "refused": s.ms.im_gateway.refused, "byes": s.ms.im_gateway.byes,
                    "expired": s.ms.im_gateway.expired,
                },
            },
        })
    }

    /// The presence agent as the admin API shows it (`/api/v1/presence`).
    pub fn presence_json(&self) -> serde_json::Value {
        let s = self.snapshot();
        let p = &s.presence;
        let views = match self.presence_views.lock() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let presentities: Vec<serde_json::Value> = views.iter().map(view_json).collect();
        serde_json::json!({
            "subscriptions": s.subscriptions,
            "presentities_known": s.presentities,
            "publications": s.publications,
            "publish": { "accepted": p.publishes, "rejected": p.publishes_rejected, "expired": p.publications_expired, "bad_bodies": p.bad_bodies },
            "subscribe": {
                "created": p.subscriptions_created, "refreshed": p.subscriptions_refreshed, "rejected": p.subscribes_rejected,
                "terminated": p.subscriptions_terminated, "expired": p.subscriptions_expired, "failed": p.subscriptions_failed,
            },
            "notify": { "sent": p.notifies, "coalesced": p.notifies_coalesced },
            "state_changes": p.state_changes,
            "watchers_recorded": p.watchers_recorded,
            "presentities": presentities,
        })
    }

    /// One presentity of the admin view, if it is listed.
    pub fn presentity_json(&self, aor: &str) -> Option<serde_json::Value> {
        let views = match self.presence_views.lock() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        views.iter().find(|v| v.aor == aor).map(view_json)
    }

    /// Copies the latest snapshot into the metrics recorder.
    pub fn export_metrics(&self) {
        let s = self.snapshot();
        let c = &s.core;
        for (class, n) in ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"].iter().zip(c.responses) {
            metrics::counter!("vienna_sip_responses_total", "class" => *class).absolute(n);
        }
        let counters: [(&'static str, u64); 26] = [
            ("vienna_sip_requests_total", c.requests),
            ("vienna_sip_auth_challenges_total", c.auth_challenges),
            ("vienna_sip_auth_failures_total", c.auth_failures),
            ("vienna_sip_auth_replays_total", c.auth_replays),
            ("vienna_sip_registrations_accepted_total", c.registrations_accepted),
            ("vienna_sip_registrations_rejected_total", c.registrations_rejected),
            ("vienna_sip_bindings_expired_total", c.bindings_expired),
            ("vienna_sip_routed_total", c.routed),
            ("vienna_sip_branches_total", c.branches),
            ("vienna_sip_forks_won_total", c.forks_won),
            ("vienna_sip_cancels_total", c.cancels),
            ("vienna_sip_acks_forwarded_total", c.acks_forwarded),
            ("vienna_sip_branch_timeouts_total", c.branch_timeouts),
            ("vienna_sip_branch_transport_errors_total", c.branch_transport_errors),
            ("vienna_sip_loops_total", c.loops),
            ("vienna_sip_parse_errors_total", s.transactions.parse_errors),
            ("vienna_sip_retransmissions_sent_total", s.transactions.retransmissions_sent),
            ("vienna_sip_retransmissions_absorbed_total", s.transactions.retransmissions_absorbed),
            ("vienna_sip_overload_rejected_total", s.transactions.overload_rejected),
            ("vienna_sip_datagrams_in_total", s.driver.datagrams_in),
            ("vienna_sip_stream_messages_in_total", s.driver.stream_messages_in),
            ("vienna_sip_messages_out_total", s.driver.messages_out),
            ("vienna_sip_send_failures_total", s.driver.send_failures + c.send_errors),
            ("vienna_sip_store_writes_total", s.driver.store_writes),
            ("vienna_sip_store_write_errors_total", s.driver.store_errors),
            ("vienna_sip_bindings_dropped_total", s.driver.bindings_dropped),
        ];
        let p = &s.presence;
        let presence: [(&'static str, u64); 14] = [
            ("vienna_presence_publishes_total", p.publishes),
            ("vienna_presence_publishes_rejected_total", p.publishes_rejected),
            ("vienna_presence_publications_expired_total", p.publications_expired),
            ("vienna_presence_bad_bodies_total", p.bad_bodies),
            ("vienna_presence_subscriptions_created_total", p.subscriptions_created),
            ("vienna_presence_subscriptions_refreshed_total", p.subscriptions_refreshed),
            ("vienna_presence_subscribes_rejected_total", p.subscribes_rejected),
            ("vienna_presence_subscriptions_terminated_total", p.subscriptions_terminated),
            ("vienna_presence_subscriptions_expired_total", p.subscriptions_expired),
            ("vienna_presence_subscriptions_failed_total", p.subscriptions_failed),
            ("vienna_presence_notifies_total", p.notifies),
            ("vienna_presence_notifies_coalesced_total", p.notifies_coalesced),
            ("vienna_presence_state_changes_total", p.state_changes),
            ("vienna_presence_watchers_recorded_total", p.watchers_recorded),
        ];
        let n = &s.ms.ntlm;
        for (reason, v) in [
            ("malformed", n.refused_malformed),
            ("unknown_user", n.refused_unknown_user),
            ("password", n.refused_password),
            ("signature", n.refused_signature),
            ("replay", n.refused_replay),
            ("association", n.refused_association),
        ] {
            metrics::counter!("vienna_sip_ntlm_refused_total", "reason" => reason).absolute(v);
        }
        let g = &s.ms.im_gateway;
        let ms: [(&'static str, u64); 20] = [
            ("vienna_sip_ntlm_challenges_total", n.challenges),
            ("vienna_sip_ntlm_established_total", n.established),
            ("vienna_sip_ntlm_verified_total", n.verified),
            ("vienna_sip_ntlm_signed_total", n.signed),
            ("vienna_sip_ms_self_subscriptions_total", s.ms.self_subscriptions),
            ("vienna_sip_ms_presence_subscriptions_total", s.ms.presence_subscriptions),
            ("vienna_sip_ms_benotifies_total", s.ms.benotifies),
            ("vienna_sip_ms_notifies_total", s.ms.notifies),
            ("vienna_sip_ms_publications_total", s.ms.publications),
            ("vienna_sip_ms_version_conflicts_total", s.ms.version_conflicts),
            ("vienna_sip_ms_edits_total", s.ms.edits),
            ("vienna_sip_ms_bad_bodies_total", s.ms.bad_bodies),
            ("vienna_sip_ms_deregistrations_total", s.ms.deregistrations),
            ("vienna_sip_ms_imgw_sessions_total", g.sessions),
            ("vienna_sip_ms_imgw_refused_full_total", g.sessions_refused_full),
            ("vienna_sip_ms_imgw_delivered_total", g.delivered),
            ("vienna_sip_ms_imgw_delivery_failures_total", g.delivery_failures),
            ("vienna_sip_ms_imgw_refused_total", g.refused),
            ("vienna_sip_ms_imgw_byes_total", g.byes),
            ("vienna_sip_ms_imgw_expired_total", g.expired),
        ];
        for (name, value) in counters.into_iter().chain(presence).chain(ms) {
            metrics::counter!(name).absolute(value);
        }
        metrics::gauge!("vienna_sip_ntlm_associations").set(s.ntlm_associations as f64);
        metrics::gauge!("vienna_sip_ms_subscriptions").set(s.ms_subscriptions as f64);
        metrics::gauge!("vienna_sip_ms_imgw_live").set(g.live as f64);
        metrics::gauge!("vienna_presence_subscriptions").set(s.subscriptions as f64);
        metrics::gauge!("vienna_presence_presentities").set(s.presentities as f64);
        metrics::gauge!("vienna_presence_publications").set(s.publications as f64);
        metrics::gauge!("vienna_sip_transactions").set(s.live_transactions as f64);
        metrics::gauge!("vienna_sip_completed_transactions").set(s.completed_transactions as f64);
        metrics::gauge!("vienna_sip_bindings").set(s.bindings as f64);
        metrics::gauge!("vienna_sip_connections").set(s.connections as f64);
    }
}

fn view_json(v: &vienna_presence::PresentityView) -> serde_json::Value {
    serde_json::json!({
        "aor": v.aor,
        "state": v.state.state().as_str(),
        "availability": v.state.availability,
        "activity": v.state.activity,
        "note": v.state.note,
        "endpoints": v.endpoints,
        "publications": v.publications,
        "watchers": v.watchers,
    })
}
