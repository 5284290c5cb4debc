/* nice_relay_check.c - a real MS-TURN client for Vienna's end-to-end tests: libnice in its OC2007R2 (or
 * OC2007) compatibility mode, headless.
 *
 * Two agents in one process, both on 127.0.0.1: agent A gathers ONLY relayed candidates (force-relay)
 * from the MS-TURN server under test, with the given base64 credentials (libnice base64-decodes them in
 * these modes, as MRAS credentials need); agent B is a plain host peer. They exchange candidates, run
 * MS-ICE2 connectivity checks (through the relay: Send requests and Data Indications; over TCP the relay
 * accepts B's connection on A's relayed address and opens one to B's passive candidate), and once A's
 * component is ready A sends COUNT messages that B echoes back (after Set Active Destination, raw). Exit 0 when A's selected pair is the
 * relayed candidate and every echo came back; 1 on timeout or failure. With COUNT 0 it stops once
 * gathering is done: exit 0 when A got its relayed candidate (the allocation succeeded).
 *
 * usage: nice_relay_check <OC2007R2|OC2007> <UDP|TCP|TLS> <server-ip> <port> <username> <password>
 *                         [count] [seconds]
 * build: gcc -Wall -o nice_relay_check nice_relay_check.c $(pkg-config --cflags --libs nice glib-2.0)
 * Output lines starting with "### " are for the test to read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glib.h>
#include <agent.h>

static GMainLoop *loop;
static NiceAgent *a, *b;
static guint sa, sb;
static int gathered, count = 5, echoed, sent, exit_code = 1;

static void b_recv(NiceAgent *agent, guint sid, guint cid, guint len, gchar *buf, gpointer d) {
    /* The peer echoes everything back. */
    int sent_back = nice_agent_send(b, sb, 1, len, buf);
    printf("### B got %u bytes, echoed %d\n", len, sent_back);
    fflush(stdout);
}

static void a_recv(NiceAgent *agent, guint sid, guint cid, guint len, gchar *buf, gpointer d) {
    if (len > 5 && !memcmp(buf, "ping-", 5)) {
        echoed++;
        printf("### echo %.*s\n", (int) len, buf);
        fflush(stdout);
        if (echoed == count) {
            exit_code = 0;
            g_main_loop_quit(loop);
        }
    }
}

static gboolean send_one(gpointer d) {
    char msg[32];
    if (sent >= count) return FALSE;
    snprintf(msg, sizeof msg, "ping-%d", sent++);
    nice_agent_send(a, sa, 1, strlen(msg), msg);
    return TRUE;
}

static void exchange(NiceAgent *from, guint fs, NiceAgent *to, guint ts) {
    gchar *ufrag = NULL, *pwd = NULL;
    GSList *cands;
    nice_agent_get_local_credentials(from, fs, &ufrag, &pwd);
    nice_agent_set_remote_credentials(to, ts, ufrag, pwd);
    cands = nice_agent_get_local_candidates(from, fs, 1);
    printf("### %s offers %u candidate(s)\n", from == a ? "A" : "B", g_slist_length(cands));
    for (GSList *l = cands; l; l = l->next) {
        gchar *s = nice_agent_generate_local_candidate_sdp(from, l->data);
        printf("### candidate %s\n", s);
        g_free(s);
    }
    nice_agent_set_remote_candidates(to, ts, 1, cands);
    g_slist_free_full(cands, (GDestroyNotify) nice_candidate_free);
    g_free(ufrag);
    g_free(pwd);
}

static void gathering_done(NiceAgent *agent, guint sid, gpointer d) {
    if (++gathered < 2) return;
    printf("### gathering done\n");
    fflush(stdout);
    if (count == 0) {
        GSList *cands = nice_agent_get_local_candidates(a, sa, 1);
        for (GSList *l = cands; l; l = l->next) {
            NiceCandidate *c = l->data;
            if (c->type == NICE_CANDIDATE_TYPE_RELAYED) {
                gchar *s = nice_agent_generate_local_candidate_sdp(a, c);
                printf("### relayed %s\n", s);
                g_free(s);
                exit_code = 0;
            }
        }
        g_slist_free_full(cands, (GDestroyNotify) nice_candidate_free);
        fflush(stdout);
        g_main_loop_quit(loop);
        return;
    }
    exchange(a, sa, b, sb);
    exchange(b, sb, a, sa);
    fflush(stdout);
}

static void state_changed(NiceAgent *agent, guint sid, guint cid, guint state, gpointer d) {
    NiceCandidate *local = NULL, *remote = NULL;
    if (agent != a) {
        printf("### B state %s\n", nice_component_state_to_string(state));
        fflush(stdout);
        return;
    }
    printf("### A state %s\n", nice_component_state_to_string(state));
    fflush(stdout);
    if (state == NICE_COMPONENT_STATE_FAILED) g_main_loop_quit(loop);
    if (state != NICE_COMPONENT_STATE_READY || sent > 0) return;
    if (nice_agent_get_selected_pair(a, sa, 1, &local, &remote)) {
        gchar *s = nice_agent_generate_local_candidate_sdp(a, local);
        printf("### selected local %s\n", s);
        g_free(s);
        if (local->type != NICE_CANDIDATE_TYPE_RELAYED) {
            printf("### selected pair is not relayed\n");
            g_main_loop_quit(loop);
            return;
        }
    }
    fflush(stdout);
    g_timeout_add(100, send_one, NULL);
}

static gboolean timeout_cb(gpointer d) {
    printf("### timeout: %d of %d echoes\n", echoed, count);
    g_main_loop_quit(loop);
    return FALSE;
}

static NiceAgent *agent_new(NiceCompatibility compat, gboolean controlling, gboolean relay_only) {
    NiceAddress addr;
    NiceAgent *agent = nice_agent_new(g_main_loop_get_context(loop), compat);
    g_object_set(agent, "upnp", FALSE, "controlling-mode", controlling, NULL);
    if (relay_only) g_object_set(agent, "force-relay", TRUE, NULL);
    nice_address_init(&addr);
    nice_address_set_from_string(&addr, "127.0.0.1");
    nice_agent_add_local_address(agent, &addr);
    g_signal_connect(agent, "candidate-gathering-done", G_CALLBACK(gathering_done), NULL);
    g_signal_connect(agent, "component-state-changed", G_CALLBACK(state_changed), NULL);
    return agent;
}

int main(int argc, char **argv) {
    NiceCompatibility compat = NICE_COMPATIBILITY_OC2007R2;
    NiceRelayType rt = NICE_RELAY_TYPE_TURN_UDP;
    int secs = 20;
    if (argc < 7) {
        fprintf(stderr, "usage: %s OC2007R2|OC2007 UDP|TCP|TLS server-ip port username password [count] [seconds]\n", argv[0]);
        return 2;
    }
    if (!strcmp(argv[1], "OC2007")) compat = NICE_COMPATIBILITY_OC2007;
    if (!strcmp(argv[2], "TCP")) rt = NICE_RELAY_TYPE_TURN_TCP;
    else if (!strcmp(argv[2], "TLS")) rt = NICE_RELAY_TYPE_TURN_TLS;
    if (argc > 7) count = atoi(argv[7]);
    if (argc > 8) secs = atoi(argv[8]);

    loop = g_main_loop_new(NULL, FALSE);
    /* B controls: over TCP, libnice's controlled side does not settle on a pair whose connection the
     * relay opened to it, while its controlling side nominates the connection it opened itself. */
    a = agent_new(compat, FALSE, TRUE);
    b = agent_new(compat, TRUE, FALSE);
    sa = nice_agent_add_stream(a, 1);
    sb = nice_agent_add_stream(b, 1);
    if (!nice_agent_set_relay_info(a, sa, 1, argv[3], atoi(argv[4]), argv[5], argv[6], rt)) {
        printf("### set_relay_info failed\n");
        return 1;
    }
    nice_agent_attach_recv(a, sa, 1, g_main_loop_get_context(loop), a_recv, NULL);
    nice_agent_attach_recv(b, sb, 1, g_main_loop_get_context(loop), b_recv, NULL);
    printf("### compat %s relay %s %s:%s\n", argv[1], argv[2], argv[3], argv[4]);
    fflush(stdout);
    nice_agent_gather_candidates(a, sa);
    nice_agent_gather_candidates(b, sb);
    g_timeout_add_seconds(secs, timeout_cb, NULL);
    g_main_loop_run(loop);
    printf("### result %s: %d of %d echoes\n", exit_code == 0 ? "ok" : "failed", echoed, count);
    fflush(stdout);
    g_object_unref(a);
    g_object_unref(b);
    return exit_code;
}
