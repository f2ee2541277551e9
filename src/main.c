/*
 * callhook: receives Vonage Voice API webhooks and keeps each call's
 * record in Redis, on one libevent loop.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "app.h"
#include "callhook/ncco.h"
#include "cli.h"
#include "supervise.h"
#include "metrics.h"
#include "callhook_config.h"
#include "dial_cli.h"
#include "dialer.h"

#define NCCO_FILE_MAX (1024 * 1024)

static struct event *shutdown_timer;
static uint64_t shutdown_deadline_ms;

static int
load_answer_ncco(struct app *app, const struct config *cfg, char *err,
                 size_t errlen)
{
    FILE *f;
    char *text;
    size_t n;

    if (cfg->answer_ncco == NULL || cfg->answer_ncco[0] == '\0') {
        app->answer_ncco = ncco_talk(cfg->answer_text);
        if (app->answer_ncco == NULL) {
            snprintf(err, errlen,
                     "invalid --answer-text: it must be valid UTF-8");
            return -1;
        }
        app->answer_ncco_len = strlen(app->answer_ncco);
        return 0;
    }

    f = fopen(cfg->answer_ncco, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read --answer-ncco %s: %s",
                 cfg->answer_ncco, strerror(errno));
        return -1;
    }
    text = malloc(NCCO_FILE_MAX + 1);
    n = text ? fread(text, 1, NCCO_FILE_MAX + 1, f) : 0;
    fclose(f);
    if (text == NULL || n > NCCO_FILE_MAX) {
        free(text);
        snprintf(err, errlen, "--answer-ncco %s is larger than 1 MiB",
                 cfg->answer_ncco);
        return -1;
    }
    if (ncco_check(text, n, err, errlen) != 0) {
        char reason[256];

        memcpy(reason, err, sizeof(reason) - 1);
        reason[sizeof(reason) - 1] = '\0';
        snprintf(err, errlen, "invalid --answer-ncco %.200s: %s",
                 cfg->answer_ncco, reason);
        free(text);
        return -1;
    }
    app->answer_ncco = text;
    app->answer_ncco_len = n;
    return 0;
}

/*
 * Tells systemd about readiness and shutdown (Type=notify) by writing to
 * the datagram socket it names in NOTIFY_SOCKET. This is the whole
 * sd_notify protocol, so libsystemd is not needed.
 */
static void
notify_systemd(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un addr;
    size_t len;
    int fd;

    if (path == NULL || (path[0] != '/' && path[0] != '@') ||
        strlen(path) >= sizeof(addr.sun_path))
        return;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    len = strlen(path);
    memcpy(addr.sun_path, path, len);
    if (addr.sun_path[0] == '@')
        addr.sun_path[0] = '\0'; /* abstract namespace */
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL,
               (struct sockaddr *)&addr,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
        log_debug("sd_notify %s failed: %s", state, strerror(errno));
    close(fd);
}

/*
 * Takes over spool files that the current --workers layout would leave
 * behind: a single process adopts every SPOOL/worker-N folder; worker 0
 * adopts the files of a single process (SPOOL itself) and the folders of
 * workers beyond the current count. Events acknowledged from a spool are
 * then replayed whatever --workers was when they were written.
 */
static int
adopt_spools(struct spool *spool, const struct config *cfg, int worker,
             char *err, size_t errlen)
{
    char base[4096], from[4200];
    const char *slash;
    int first = worker < 0 ? 0 : (int)cfg->workers;

    if (worker > 0)
        return 0;
    if (worker == 0) {
        slash = strrchr(cfg->spool_dir, '/');
        snprintf(base, sizeof(base), "%.*s",
                 (int)(slash ? slash - cfg->spool_dir : 0), cfg->spool_dir);
        if (spool_adopt(spool, base, err, errlen) < 0)
            return -1;
    } else {
        snprintf(base, sizeof(base), "%s", cfg->spool_dir);
    }
    for (int k = first; k < 256; k++) {
        int moved;

        snprintf(from, sizeof(from), "%s/worker-%d", base, k);
        moved = spool_adopt(spool, from, err, errlen);
        if (moved < 0)
            return -1;
        if (moved > 0)
            log_info("took over %d spool files from %s", moved, from);
    }
    return 0;
}

/* True for 127.0.0.0/8, ::1 and localhost, with any port. */
static int
is_loopback_address(const char *address)
{
    return strncmp(address, "127.", 4) == 0 ||
           strncmp(address, "[::1]:", 6) == 0 ||
           strncmp(address, "localhost:", 10) == 0;
}

/*
 * Turns each [API_KEY:]SECRET into a jwt_secret. The text before the first
 * ':' is an API key when it is 1 to 64 letters and digits; otherwise the
 * whole value is one default secret.
 */
static int
load_secrets(struct app *app, const struct config *cfg, char *err,
             size_t errlen)
{
    const struct string_list *list = &cfg->signature_secrets;
    size_t defaults = 0;

    if (list->count == 0)
        return 0;
    app->secrets = calloc(list->count, sizeof(*app->secrets));
    if (app->secrets == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < list->count; i++) {
        char *item = list->items[i];
        char *colon = strchr(item, ':');
        size_t key_len = colon ? (size_t)(colon - item) : 0;
        int keyed = colon != NULL && key_len > 0 && key_len <= 64;

        for (size_t k = 0; keyed && k < key_len; k++) {
            if (!isalnum((unsigned char)item[k]))
                keyed = 0;
        }
        if (keyed) {
            *colon = '\0';
            app->secrets[i].api_key = item;
            app->secrets[i].secret = (const unsigned char *)colon + 1;
        } else {
            app->secrets[i].api_key = NULL;
            app->secrets[i].secret = (const unsigned char *)item;
            defaults++;
        }
        app->secrets[i].secret_len =
            strlen((const char *)app->secrets[i].secret);
        if (app->secrets[i].secret_len == 0) {
            snprintf(err, errlen, "invalid --signature-secret number %zu: "
                                  "the secret is empty",
                     i + 1);
            return -1;
        }
    }
    if (defaults > 1) {
        snprintf(err, errlen, "invalid --signature-secret: %zu secrets "
                              "without an API_KEY: prefix; give at most one "
                              "default and prefix the others",
                 defaults);
        return -1;
    }
    app->nsecrets = list->count;
    return 0;
}

static void
on_store_ready(void *arg)
{
    struct app *app = arg;

    if (app->ingest != NULL)
        ingest_kick(app->ingest);
    if (!app->announced_ready && !app->shutting_down) {
        app->announced_ready = 1;
        log_info("ready public=%s admin=%s",
                 http_server_address(app->public_srv),
                 http_server_address(app->admin_srv));
        notify_systemd("READY=1");
    }
}

static void
shutdown_tick(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;

    if ((app->inflight == 0 && dialer_busy(app->dialer) == 0) ||
        clock_monotonic_ms() >= shutdown_deadline_ms)
        event_base_loopbreak(app->base);
    else if (app->spool != NULL)
        spool_flush(app->spool);
}

/* SIGUSR1 makes the log more verbose, SIGUSR2 quieter, one step each. */
static void
on_log_signal(evutil_socket_t sig, short what, void *arg)
{
    if (sig == SIGUSR1 && log_min_level > LOG_DEBUG)
        log_min_level--;
    else if (sig == SIGUSR2 && log_min_level < LOG_ERROR)
        log_min_level++;
    /* Logged at error level so the change shows whatever the new level. */
    log_error("log level is now %s", log_level_name(log_min_level));
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct app *app = arg;
    struct timeval tick = {0, 20000};

    if (app->shutting_down) {
        log_warn("second signal %s: exiting without waiting",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
        event_base_loopbreak(app->base);
        return;
    }
    app->shutting_down = 1;
    notify_systemd("STOPPING=1");
    log_info("shutting down on %s: %zu webhook requests waiting for redis",
             sig == SIGINT ? "SIGINT" : "SIGTERM", app->inflight);
    http_server_stop_accepting(app->public_srv);
    http_server_stop_accepting(app->admin_srv);
    dialer_drain(app->dialer);

    shutdown_deadline_ms =
        clock_monotonic_ms() + (uint64_t)app->cfg->shutdown_timeout * 1000;
    shutdown_timer = event_new(app->base, -1, EV_PERSIST, shutdown_tick, app);
    if (shutdown_timer == NULL) {
        event_base_loopbreak(app->base);
        return;
    }
    event_add(shutdown_timer, &tick);
    shutdown_tick(-1, 0, app);
}

int
main(int argc, char **argv)
{
    struct config cfg;
    struct app app;
    struct http_limits limits;
    struct store_options store_opts;
    struct event *sigterm = NULL, *sigint = NULL, *sigusr1 = NULL,
                 *sigusr2 = NULL;
    char err[512], target[400];
    int level, rc = 1, worker = -1;

    if (argc > 1 && strcmp(argv[1], "status") == 0)
        return cli_status(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "watch") == 0)
        return cli_watch(argc - 1, argv + 1);

    memset(&app, 0, sizeof(app));
    if (argc > 1 && strcmp(argv[1], "dial") == 0)
        return dial_cli_main(argc - 1, argv + 1);
    switch (config_load(&cfg, argc, argv, err, sizeof(err))) {
    case CONFIG_EXIT:
        config_free(&cfg);
        return 0;
    case CONFIG_ERROR:
        fprintf(stderr, "callhook: %s\n", err);
        config_free(&cfg);
        return 2;
    case CONFIG_OK:
        break;
    }

    level = log_level_parse(cfg.log_level);
    if (level < 0) {
        fprintf(stderr, "callhook: invalid --log-level '%s': expected debug, "
                        "info, warn or error\n",
                cfg.log_level);
        config_free(&cfg);
        return 2;
    }
    log_min_level = (enum log_level)level;
    if (strcmp(cfg.log_format, "json") == 0) {
        log_format = LOG_FORMAT_JSON;
    } else if (strcmp(cfg.log_format, "text") != 0) {
        fprintf(stderr, "callhook: invalid --log-format '%s': expected text "
                        "or json\n",
                cfg.log_format);
        config_free(&cfg);
        return 2;
    }

    if (cfg.workers > 1) {
        rc = supervise(&cfg, &worker);
        if (rc >= 0) {
            config_free(&cfg);
            return rc;
        }
        limits.reuse_port = 1;
        rc = 1;
    } else {
        limits.reuse_port = 0;
    }

    app.cfg = &cfg;
    app.bad_request_rl = (struct log_ratelimit)LOG_RATELIMIT_INIT(1000);
    app.unrecorded_rl = (struct log_ratelimit)LOG_RATELIMIT_INIT(1000);
    app.signature_rl = (struct log_ratelimit)LOG_RATELIMIT_INIT(1000);
    if (redis_target_parse(cfg.redis_url, &app.redis, err, sizeof(err)) != 0 ||
        load_secrets(&app, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "callhook: %s\n", err);
        rc = 2;
        goto out;
    }
    if (load_answer_ncco(&app, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "callhook: %s\n", err);
        goto out;
    }

    metrics.start_time_s = (uint64_t)time(NULL);

    /* A client that vanishes mid-reply must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());

    app.base = event_base_new();
    if (app.base == NULL) {
        log_error("cannot create the event loop");
        goto out;
    }

    limits.max_body = cfg.max_body;
    limits.max_headers = cfg.max_headers;
    limits.request_timeout = (unsigned)cfg.request_timeout;
    limits.idle_timeout = (unsigned)cfg.idle_timeout;
    limits.max_connections = (unsigned)cfg.max_connections;
    limits.max_header_count = (unsigned)cfg.max_header_count;
    limits.max_uri = (unsigned)cfg.max_uri;
    limits.max_requests = (unsigned)cfg.max_requests;
    if (cfg.admin_token == NULL && cfg.admin_listen[0] != '\0' &&
        !is_loopback_address(cfg.admin_listen)) {
        log_error("refusing --admin-listen %s without an admin token: the "
                  "admin listener may only face a network with "
                  "--admin-token or --admin-token-file set",
                  cfg.admin_listen);
        goto out;
    }
    app.public_srv = http_server_new(app.base, cfg.listen, &limits,
                                     webhook_handle, &app, err, sizeof(err));
    if (app.public_srv == NULL) {
        log_error("%s (--listen)", err);
        goto out;
    }
    if (cfg.admin_listen[0] != '\0')
        app.admin_srv = http_server_new(app.base, cfg.admin_listen, &limits,
                                        admin_handle, &app, err, sizeof(err));
    if (app.admin_srv == NULL && cfg.admin_listen[0] != '\0') {
        log_error("%s (--admin-listen)", err);
        goto out;
    }

    store_opts.ttl_seconds = (unsigned)cfg.record_ttl;
    store_opts.history_max = (unsigned)cfg.history_max;
    store_opts.command_timeout_ms = (unsigned)cfg.redis_timeout;
    store_opts.stream_key = cfg.stream_key;
    store_opts.stream_maxlen = (unsigned)cfg.stream_maxlen;
    store_opts.on_ready = on_store_ready;
    store_opts.on_ready_arg = &app;
    app.store = store_new(app.base, &app.redis, &store_opts);
    if (app.store == NULL) {
        log_error("out of memory");
        goto out;
    }
    if (cfg.spool_dir[0] != '\0') {
        struct spool_options spool_opts;

        spool_opts.dir = cfg.spool_dir;
        spool_opts.max_bytes = cfg.spool_max_bytes;
        spool_opts.rotate_bytes = 4 * 1024 * 1024;
        spool_opts.batch_delay_us = 1000;
        app.spool = spool_open(app.base, &spool_opts, err, sizeof(err));
        if (app.spool == NULL) {
            log_error("%s (--spool-dir)", err);
            goto out;
        }
        if (adopt_spools(app.spool, &cfg, worker, err, sizeof(err)) != 0) {
            log_error("%s (--spool-dir)", err);
            goto out;
        }
        if (spool_has_backlog(app.spool))
            log_info("spool %s holds %" PRIu64 " bytes from before; "
                     "replaying once redis is ready",
                     cfg.spool_dir, spool_get_stats(app.spool)->bytes);
    }
    app.ingest = ingest_new(app.base, app.store, app.spool,
                            (size_t)cfg.max_pending);
    if (app.ingest == NULL) {
        log_error("out of memory");
        goto out;
    }
    if (dialer_from_config(&cfg, app.base, &app.redis, app.store, app.ingest,
                           &app.dialer, err, sizeof(err)) != 0) {
        log_error("%s", err);
        goto out;
    }

    sigterm = evsignal_new(app.base, SIGTERM, on_signal, &app);
    sigint = evsignal_new(app.base, SIGINT, on_signal, &app);
    sigusr1 = evsignal_new(app.base, SIGUSR1, on_log_signal, &app);
    sigusr2 = evsignal_new(app.base, SIGUSR2, on_log_signal, &app);
    if (sigterm == NULL || sigint == NULL || sigusr1 == NULL ||
        sigusr2 == NULL || evsignal_add(sigterm, NULL) ||
        evsignal_add(sigint, NULL) || evsignal_add(sigusr1, NULL) ||
        evsignal_add(sigusr2, NULL)) {
        log_error("cannot install signal handlers");
        goto out;
    }

    redis_target_describe(&app.redis, target, sizeof(target));
    log_info("callhook %s listening public=%s admin=%s redis=%s spool=%s "
             "signed-webhooks=%s",
             CALLHOOK_VERSION, http_server_address(app.public_srv),
             http_server_address(app.admin_srv), target,
             app.spool ? cfg.spool_dir : "off",
             app.nsecrets ? "required" : "off");
    store_start(app.store);
    if (app.dialer != NULL)
        dialer_start(app.dialer);

    event_base_dispatch(app.base);
    rc = 0;

out:
    /* Before the store goes: the dialer's callbacks still use it. */
    dialer_stop(app.dialer);
    if (app.store != NULL) {
        size_t waiting = app.inflight;
        uint64_t refused = app.counters.events_unavailable;

        /* Whatever still waits for Redis gets a NULL reply here and takes
         * the spool path (or 503 without a spool). */
        if (app.ingest != NULL)
            ingest_stop(app.ingest);
        store_free(app.store);
        app.store = NULL;
        if (app.spool != NULL)
            spool_flush(app.spool);
        if (waiting > 0)
            log_warn("shutdown timeout: %zu webhook requests stopped waiting "
                     "for redis; %" PRIu64 " of them got 503",
                     waiting, app.counters.events_unavailable - refused);
        /* Let the replies written by those callbacks reach the sockets. */
        event_base_loop(app.base, EVLOOP_NONBLOCK);
    }
    if (app.base != NULL && rc == 0) {
        const struct ingest_stats *is = ingest_get_stats(app.ingest);

        log_info("shutdown complete: %" PRIu64 " requests, %" PRIu64
                 " events applied, %" PRIu64 " duplicates, %" PRIu64
                 " spooled, %" PRIu64 " replayed, %" PRIu64 " rejected, %"
                 PRIu64 " got 503, %" PRIu64 " failed, %" PRIu64
                 " answer webhooks",
                 app.counters.requests, app.counters.events_applied,
                 app.counters.events_duplicate, is->via_spool, is->replayed,
                 app.counters.events_rejected,
                 app.counters.events_unavailable, app.counters.events_failed,
                 app.counters.answers);
    }
    /* Closing the spool flushes its last batch, whose callbacks reach the
     * ingest and reply on the listeners: free those afterwards. */
    spool_close(app.spool);
    ingest_free(app.ingest);
    if (shutdown_timer != NULL)
        event_free(shutdown_timer);
    if (sigterm != NULL)
        event_free(sigterm);
    if (sigint != NULL)
        event_free(sigint);
    if (sigusr1 != NULL)
        event_free(sigusr1);
    if (sigusr2 != NULL)
        event_free(sigusr2);
    http_server_free(app.public_srv);
    http_server_free(app.admin_srv);
    if (app.base != NULL)
        event_base_free(app.base);
    dialer_free(app.dialer);
    free(app.answer_ncco);
    free(app.secrets);
    config_free(&cfg);
    return rc;
}
