/* sipe_driver.c - drives SIPE (pidgin-sipe, the libpurple protocol plug-in for Microsoft's SIP dialect)
 * headless for Vienna's end-to-end tests.
 *
 * usage: sipe_driver <user> <password> <server[:port]> <tls|tcp> [seconds]
 * env:   PURPLE_HOME  libpurple's configuration directory (default ./purplehome)
 *        SIPE_DEBUG   when set, libpurple's debug log (every SIP message SIPE sends and receives) goes to
 *                     standard output
 *
 * Events go to standard error, one per line:
 *   ### SIGNED ON
 *   ### CONNECTION ERROR <code>: <text>
 *   ### BUDDY <name> <group> <status-id>          (a contact appeared, or changed state)
 *   ### IM <from> <text>
 *   ### REQUEST <title> / <primary>               (a question libpurple asked; the first action is taken)
 * Commands come on standard input, one per line:
 *   status <id>          set our own state (available, busy, away, do-not-disturb, be-right-back, ...)
 *   list                 print every buddy as a BUDDY line
 *   im <who> <text>      send an instant message
 *   quit                 sign out (un-REGISTER) and exit
 * The program also exits after <seconds> (default 60).
 *
 * build: gcc -rdynamic -o sipe_driver sipe_driver.c $(pkg-config --cflags --libs purple glib-2.0 libxml-2.0) -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <glib.h>
#include <libxml/parser.h>
#include <purple.h>

/* SIPE 1.25 parses every XML body with a SAX handler marked XML_SAX2_MAGIC that has only the SAX1
 * element callbacks (src/core/sipe-xml.c). Debian 12's libxml2 (2.9.14+dfsg-1.3~deb12u5) calls no element
 * callback for such a handler, so SIPE as packaged there parses no XML at all: no contact list, no
 * presence, no provisioning. This executable interposes xmlSAXUserParseMemory and marks such handlers
 * as SAX1 handlers, which libxml2 then drives as SIPE expects. (Built with -rdynamic so that libsipe.so
 * binds to it.) */
int xmlSAXUserParseMemory(xmlSAXHandlerPtr sax, void *user_data, const char *buffer, int size) {
    static int (*real)(xmlSAXHandlerPtr, void *, const char *, int);
    if (!real) real = (int (*)(xmlSAXHandlerPtr, void *, const char *, int)) dlsym(RTLD_NEXT, "xmlSAXUserParseMemory");
    if (sax && sax->initialized == XML_SAX2_MAGIC && !sax->startElementNs && sax->startElement) {
        xmlSAXHandler copy = *sax;
        copy.initialized = 1;
        return real(&copy, user_data, buffer, size);
    }
    return real(sax, user_data, buffer, size);
}

static PurpleAccount *account;
static GMainLoop *loop;

/* ---- libpurple event loop on GLib ---- */
typedef struct { PurpleInputFunction fn; gpointer data; } IoClosure;
static gboolean io_cb(GIOChannel *src, GIOCondition cond, gpointer d) {
    IoClosure *c = d; int pc = 0;
    if (cond & (G_IO_IN | G_IO_HUP | G_IO_ERR)) pc |= PURPLE_INPUT_READ;
    if (cond & (G_IO_OUT | G_IO_HUP | G_IO_ERR)) pc |= PURPLE_INPUT_WRITE;
    c->fn(c->data, g_io_channel_unix_get_fd(src), pc);
    return TRUE;
}
static guint input_add(gint fd, PurpleInputCondition cond, PurpleInputFunction fn, gpointer data) {
    IoClosure *c = g_new0(IoClosure, 1); GIOCondition gc = 0;
    c->fn = fn; c->data = data;
    if (cond & PURPLE_INPUT_READ)  gc |= G_IO_IN | G_IO_HUP | G_IO_ERR;
    if (cond & PURPLE_INPUT_WRITE) gc |= G_IO_OUT | G_IO_HUP | G_IO_ERR | G_IO_NVAL;
    GIOChannel *ch = g_io_channel_unix_new(fd);
    guint id = g_io_add_watch_full(ch, G_PRIORITY_DEFAULT, gc, io_cb, c, g_free);
    g_io_channel_unref(ch);
    return id;
}
static PurpleEventLoopUiOps loop_ops = {
    g_timeout_add, g_source_remove, input_add, g_source_remove, NULL, g_timeout_add_seconds, NULL, NULL, NULL
};

/* ---- questions (the self-signed certificate): take the first action ---- */
static void *request_action(const char *title, const char *primary, const char *secondary, int default_action,
        PurpleAccount *acct, const char *who, PurpleConversation *conv, void *user_data, size_t action_count,
        va_list actions) {
    const char *label = va_arg(actions, const char *);
    PurpleRequestActionCb cb = va_arg(actions, PurpleRequestActionCb);
    fprintf(stderr, "### REQUEST %s / %s -> %s\n", title ? title : "", primary ? primary : "", label ? label : "");
    if (cb) cb(user_data, 0);
    return NULL;
}
static PurpleRequestUiOps request_ops = { NULL, NULL, request_action, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL };

/* Authorization requests ("bob added you"): grant. */
static void *request_authorize(PurpleAccount *acct, const char *remote_user, const char *id, const char *alias,
        const char *message, gboolean on_list, PurpleAccountRequestAuthorizationCb authorize_cb,
        PurpleAccountRequestAuthorizationCb deny_cb, void *user_data) {
    fprintf(stderr, "### AUTHORIZE %s\n", remote_user ? remote_user : "");
    if (authorize_cb) authorize_cb(user_data);
    return NULL;
}
static PurpleAccountUiOps account_ops = { NULL, NULL, NULL, request_authorize, NULL, NULL, NULL, NULL, NULL };

/* ---- events ---- */
static void print_buddy(PurpleBuddy *b) {
    PurpleStatus *s = purple_presence_get_active_status(purple_buddy_get_presence(b));
    PurpleGroup *g = purple_buddy_get_group(b);
    fprintf(stderr, "### BUDDY %s %s %s\n", purple_buddy_get_name(b), g ? purple_group_get_name(g) : "-",
            s ? purple_status_get_id(s) : "-");
}
static void on_conn_error(PurpleConnection *gc, PurpleConnectionError err, const gchar *desc, gpointer d) {
    fprintf(stderr, "### CONNECTION ERROR %d: %s\n", err, desc ? desc : "");
}
static void on_signed_on(PurpleConnection *gc, gpointer d) { fprintf(stderr, "### SIGNED ON\n"); }
static void on_status_changed(PurpleBuddy *b, PurpleStatus *old, PurpleStatus *new, gpointer d) { print_buddy(b); }
static void on_buddy_event(PurpleBuddy *b, gpointer d) { print_buddy(b); }
static void on_node_added(PurpleBlistNode *node, gpointer d) {
    if (PURPLE_BLIST_NODE_IS_BUDDY(node)) print_buddy((PurpleBuddy *) node);
}
static void on_im(PurpleAccount *acct, char *sender, char *message, PurpleConversation *conv,
        PurpleMessageFlags flags, gpointer d) {
    char *plain = purple_markup_strip_html(message);
    fprintf(stderr, "### IM %s %s\n", sender ? sender : "", plain ? plain : "");
    g_free(plain);
}

/* ---- commands ---- */
static gboolean stdin_cb(GIOChannel *ch, GIOCondition cond, gpointer d) {
    gchar *line = NULL; gsize len = 0;
    GIOStatus st = g_io_channel_read_line(ch, &line, &len, NULL, NULL);
    if (st == G_IO_STATUS_EOF || st == G_IO_STATUS_ERROR) { g_main_loop_quit(loop); return FALSE; }
    if (!line) return TRUE;
    g_strstrip(line);
    if (g_str_has_prefix(line, "status ")) {
        purple_account_set_status(account, line + 7, TRUE, NULL);
        fprintf(stderr, "### OK status %s\n", line + 7);
    } else if (!strcmp(line, "list")) {
        GSList *l, *buddies = purple_find_buddies(account, NULL);
        for (l = buddies; l; l = l->next) print_buddy(l->data);
        g_slist_free(buddies);
        fprintf(stderr, "### OK list\n");
    } else if (g_str_has_prefix(line, "im ")) {
        gchar **parts = g_strsplit(line + 3, " ", 2);
        if (parts[0] && parts[1]) {
            PurpleConversation *conv = purple_conversation_new(PURPLE_CONV_TYPE_IM, account, parts[0]);
            purple_conv_im_send(PURPLE_CONV_IM(conv), parts[1]);
            fprintf(stderr, "### OK im %s\n", parts[0]);
        }
        g_strfreev(parts);
    } else if (!strcmp(line, "quit")) {
        g_main_loop_quit(loop);
    }
    g_free(line);
    return TRUE;
}
static gboolean quit_cb(gpointer d) { g_main_loop_quit(loop); return FALSE; }

static void null_debug(PurpleDebugLevel level, const char *category, const char *arg_s) {}
static gboolean debug_enabled(PurpleDebugLevel level, const char *category) { return FALSE; }
static PurpleDebugUiOps quiet_debug = { null_debug, debug_enabled, NULL, NULL, NULL, NULL };

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s user password server[:port] tls|tcp [seconds]\n", argv[0]);
        return 2;
    }
    setvbuf(stderr, NULL, _IOLBF, 0);
    purple_util_set_user_dir(g_getenv("PURPLE_HOME") ? g_getenv("PURPLE_HOME") : "./purplehome");
    if (g_getenv("SIPE_DEBUG")) {
        purple_debug_set_enabled(TRUE);
    } else {
        purple_debug_set_ui_ops(&quiet_debug);
    }
    purple_core_set_ui_ops(NULL);
    purple_eventloop_set_ui_ops(&loop_ops);
    purple_request_set_ui_ops(&request_ops);
    purple_accounts_set_ui_ops(&account_ops);
    purple_plugins_add_search_path("/usr/lib/purple-2");
    if (!purple_core_init("vienna-test")) { fprintf(stderr, "### FATAL core init failed\n"); return 1; }
    purple_set_blist(purple_blist_new());
    purple_blist_load();
    purple_prefs_load();
    purple_plugins_probe(G_MODULE_SUFFIX);
    if (!purple_find_prpl("prpl-sipe")) { fprintf(stderr, "### FATAL prpl-sipe not found\n"); return 1; }

    account = purple_account_new(argv[1], "prpl-sipe");
    purple_account_set_password(account, argv[2]);
    purple_account_set_string(account, "server", argv[3]);
    purple_account_set_string(account, "transport", argv[4]);
    purple_account_set_string(account, "authentication", "ntlm");
    purple_accounts_add(account);

    static int handle;
    purple_signal_connect(purple_connections_get_handle(), "connection-error", &handle,
                          PURPLE_CALLBACK(on_conn_error), NULL);
    purple_signal_connect(purple_connections_get_handle(), "signed-on", &handle, PURPLE_CALLBACK(on_signed_on), NULL);
    purple_signal_connect(purple_blist_get_handle(), "buddy-status-changed", &handle,
                          PURPLE_CALLBACK(on_status_changed), NULL);
    purple_signal_connect(purple_blist_get_handle(), "buddy-signed-on", &handle, PURPLE_CALLBACK(on_buddy_event), NULL);
    purple_signal_connect(purple_blist_get_handle(), "buddy-signed-off", &handle, PURPLE_CALLBACK(on_buddy_event), NULL);
    purple_signal_connect(purple_blist_get_handle(), "blist-node-added", &handle, PURPLE_CALLBACK(on_node_added), NULL);
    purple_signal_connect(purple_conversations_get_handle(), "received-im-msg", &handle, PURPLE_CALLBACK(on_im), NULL);

    loop = g_main_loop_new(NULL, FALSE);
    GIOChannel *in = g_io_channel_unix_new(0);
    g_io_add_watch(in, G_IO_IN | G_IO_HUP | G_IO_ERR, stdin_cb, NULL);
    purple_account_set_enabled(account, "vienna-test", TRUE);
    purple_account_set_status(account, "available", TRUE, NULL);
    g_timeout_add_seconds(argc > 5 ? atoi(argv[5]) : 60, quit_cb, NULL);
    g_main_loop_run(loop);
    purple_account_disconnect(account);
    fprintf(stderr, "### EXIT\n");
    return 0;
}
