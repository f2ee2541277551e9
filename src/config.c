#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "callhook_config.h"

enum option_type {
    OPT_FLAG, /* no value on the command line; 1, 0, true or false in env */
    OPT_STRING,
    OPT_NUMBER,
    OPT_LIST, /* repeatable; each use adds an item */
};

struct option_spec {
    const char *name;
    const char *env;
    enum option_type type;
    size_t offset;
    const char *fallback;   /* default, as text */
    unsigned long min, max; /* for numbers */
    int secret;             /* never printed */
    const char *arg;        /* placeholder in --help */
    const char *help;
};

#define FIELD(f) offsetof(struct config, f)

static const struct option_spec specs[] = {
    {"listen", "CALLHOOK_LISTEN", OPT_STRING, FIELD(listen), "127.0.0.1:3000",
     0, 0, 0, "HOST:PORT",
     "public listener for the Vonage webhooks (port 0 picks a free port)"},
    {"admin-listen", "CALLHOOK_ADMIN_LISTEN", OPT_STRING, FIELD(admin_listen),
     "127.0.0.1:3001", 0, 0, 0, "HOST:PORT",
     "admin listener for /calls, /readyz, /metrics; '' turns it off; keep "
     "it off the internet"},
    {"admin-token", "CALLHOOK_ADMIN_TOKEN", OPT_STRING, FIELD(admin_token),
     NULL, 0, 0, 1, "TOKEN",
     "bearer token for admin write routes (default: none, routes disabled)"},
    {"admin-token-file", "CALLHOOK_ADMIN_TOKEN_FILE", OPT_STRING,
     FIELD(admin_token_file), NULL, 0, 0, 0, "FILE",
     "read the admin token from this file, keeping it out of process "
     "listings"},
    {"redis", "REDIS_URL", OPT_STRING, FIELD(redis_url),
     "redis://127.0.0.1:6379/0", 0, 0, 0, "URL",
     "Redis server: redis://[[user]:password@]host[:port][/db] or "
     "unix:///path[?db=N]"},
    {"public-url", "CALLHOOK_PUBLIC_URL", OPT_STRING, FIELD(public_url),
     "http://127.0.0.1:3000", 0, 0, 0, "URL",
     "URL at which Vonage reaches the public listener"},
    {"answer-text", "CALLHOOK_ANSWER_TEXT", OPT_STRING, FIELD(answer_text),
     "Hello. This call is handled by callhook. Goodbye.", 0, 0, 0, "TEXT",
     "text of the talk action the answer webhook returns"},
    {"answer-ncco", "CALLHOOK_ANSWER_NCCO", OPT_STRING, FIELD(answer_ncco),
     NULL, 0, 0, 0, "FILE",
     "JSON file with the NCCO the answer webhook returns (overrides "
     "--answer-text)"},
    {"max-body", "CALLHOOK_MAX_BODY", OPT_NUMBER, FIELD(max_body), "65536",
     256, 16777216, 0, "BYTES", "largest request body accepted; larger gets 413"},
    {"max-headers", "CALLHOOK_MAX_HEADERS", OPT_NUMBER, FIELD(max_headers),
     "16384", 1024, 1048576, 0, "BYTES",
     "largest request line plus headers accepted"},
    {"request-timeout", "CALLHOOK_REQUEST_TIMEOUT", OPT_NUMBER,
     FIELD(request_timeout), "10", 1, 3600, 0, "SECONDS",
     "time a client has to send one whole request, from its first byte"},
    {"idle-timeout", "CALLHOOK_IDLE_TIMEOUT", OPT_NUMBER, FIELD(idle_timeout),
     "60", 1, 86400, 0, "SECONDS",
     "time a connection may stay open with nothing sent either way"},
    {"max-connections", "CALLHOOK_MAX_CONNECTIONS", OPT_NUMBER,
     FIELD(max_connections), "4096", 1, 1000000, 0, "COUNT",
     "open connections per listener; more wait in the kernel's backlog"},
    {"max-header-count", "CALLHOOK_MAX_HEADER_COUNT", OPT_NUMBER,
     FIELD(max_header_count), "64", 4, 10000, 0, "COUNT",
     "request headers accepted; more gets 431"},
    {"max-uri", "CALLHOOK_MAX_URI", OPT_NUMBER, FIELD(max_uri), "8192", 64,
     1048576, 0, "BYTES", "longest request target (path and query); "
                          "longer gets 414"},
    {"max-requests", "CALLHOOK_MAX_REQUESTS", OPT_NUMBER, FIELD(max_requests),
     "10000", 1, 100000000, 0, "COUNT",
     "requests served on one keep-alive connection before it is closed"},
    {"record-ttl", "CALLHOOK_RECORD_TTL", OPT_NUMBER, FIELD(record_ttl),
     "2592000", 0, 315360000, 0, "SECONDS",
     "lifetime of a call's keys once it reaches a final status; 0 keeps "
     "them forever"},
    {"history-max", "CALLHOOK_HISTORY_MAX", OPT_NUMBER, FIELD(history_max),
     "100", 1, 100000, 0, "COUNT", "events kept in each call's history list"},
    {"shutdown-timeout", "CALLHOOK_SHUTDOWN_TIMEOUT", OPT_NUMBER,
     FIELD(shutdown_timeout), "10", 0, 3600, 0, "SECONDS",
     "on SIGTERM or SIGINT, longest wait for Redis writes in flight"},
    {"redis-timeout", "CALLHOOK_REDIS_TIMEOUT", OPT_NUMBER,
     FIELD(redis_timeout), "2000", 0, 600000, 0, "MILLISECONDS",
     "longest wait for a Redis reply before the connection is rebuilt and "
     "the event goes to the spool; 0 waits forever"},
    {"max-pending", "CALLHOOK_MAX_PENDING", OPT_NUMBER, FIELD(max_pending),
     "10000", 1, 10000000, 0, "COUNT",
     "Redis commands in flight at once; events beyond go to the spool"},
    {"application-id", "VONAGE_APPLICATION_ID", OPT_STRING,
     FIELD(application_id), NULL, 0, 0, 0, "ID",
     "Vonage application that places outbound calls; with a private key "
     "it turns the dialer on"},
    {"private-key", "VONAGE_PRIVATE_KEY_PATH", OPT_STRING, FIELD(private_key),
     NULL, 0, 0, 0, "FILE",
     "PEM file with the application's private key (or the PEM text itself "
     "in VONAGE_PRIVATE_KEY)"},
    {"api-url", "VONAGE_API_URL", OPT_STRING, FIELD(api_url),
     "https://api.nexmo.com", 0, 0, 0, "URL",
     "base URL of the Voice API that calls are placed with"},
    {"dial-rate", "CALLHOOK_DIAL_RATE", OPT_NUMBER, FIELD(dial_rate), "3", 1,
     1000, 0, "CALLS", "calls placed per second at most"},
    {"dial-concurrency", "CALLHOOK_DIAL_CONCURRENCY", OPT_NUMBER,
     FIELD(dial_concurrency), "10", 1, 1000, 0, "COUNT",
     "call requests in flight at once, and dial jobs taken at once"},
    {"dial-connect-timeout", "CALLHOOK_DIAL_CONNECT_TIMEOUT", OPT_NUMBER,
     FIELD(dial_connect_timeout), "5000", 1, 600000, 0, "MILLISECONDS",
     "longest wait to connect to the Voice API, TLS included"},
    {"dial-timeout", "CALLHOOK_DIAL_TIMEOUT", OPT_NUMBER, FIELD(dial_timeout),
     "30000", 1, 600000, 0, "MILLISECONDS",
     "longest wait for a whole call request, connecting included"},
    {"dial-max-attempts", "CALLHOOK_DIAL_MAX_ATTEMPTS", OPT_NUMBER,
     FIELD(dial_max_attempts), "10", 1, 1000, 0, "COUNT",
     "requests sent for one job before it ends as failed"},
    {"retry-ambiguous", "CALLHOOK_RETRY_AMBIGUOUS", OPT_FLAG,
     FIELD(retry_ambiguous), "0", 0, 1, 0, "",
     "dial again when a request may have placed the call (timeout, 500, "
     "502, 504); this can call someone twice"},
    {"spool-dir", "CALLHOOK_SPOOL_DIR", OPT_STRING, FIELD(spool_dir), "spool",
     0, 0, 0, "DIR",
     "folder for events Redis cannot take now; '' turns the spool off and "
     "such events get 503"},
    {"spool-max-bytes", "CALLHOOK_SPOOL_MAX_BYTES", OPT_NUMBER,
     FIELD(spool_max_bytes), "1073741824", 65536, 1099511627776UL, 0,
     "BYTES", "largest size of the spool; when full, webhooks get 503"},
    {"stream-key", "CALLHOOK_STREAM_KEY", OPT_STRING, FIELD(stream_key),
     "callhook:events", 0, 0, 0, "KEY",
     "Redis stream that receives every applied event; '' turns it off"},
    {"stream-maxlen", "CALLHOOK_STREAM_MAXLEN", OPT_NUMBER,
     FIELD(stream_maxlen), "100000", 0, 1000000000, 0, "COUNT",
     "approximate number of entries the stream keeps; 0 turns it off"},
    {"workers", "CALLHOOK_WORKERS", OPT_NUMBER, FIELD(workers), "1", 1, 64,
     0, "COUNT",
     "processes sharing the public port (SO_REUSEPORT), supervised by a "
     "parent; worker 0 also serves the admin listener"},
    {"signature-secret", "VONAGE_SIGNATURE_SECRET", OPT_LIST,
     FIELD(signature_secrets), NULL, 0, 0, 1, "[API_KEY:]SECRET",
     "require signed webhooks (HS256 JWT) with this signature secret; "
     "repeat for several accounts or for rotation"},
    {"signature-secret-file", "VONAGE_SIGNATURE_SECRET_FILE", OPT_STRING,
     FIELD(signature_secret_file), NULL, 0, 0, 0, "FILE",
     "read signature secrets from this file, one [API_KEY:]SECRET a line"},
    {"signature-max-age", "CALLHOOK_SIGNATURE_MAX_AGE", OPT_NUMBER,
     FIELD(signature_max_age), "300", 1, 86400, 0, "SECONDS",
     "accepted distance between a signed token's iat and now, either way"},
    {"log-level", "CALLHOOK_LOG_LEVEL", OPT_STRING, FIELD(log_level), "info",
     0, 0, 0, "LEVEL", "debug, info, warn or error; debug logs every request; "
                       "SIGUSR1 lowers and SIGUSR2 raises it at run time"},
    {"log-format", "CALLHOOK_LOG_FORMAT", OPT_STRING, FIELD(log_format),
     "text", 0, 0, 0, "FORMAT",
     "text for a terminal, or json: one object a line with time, level, "
     "msg and ids"},
};

#define NSPECS (sizeof(specs) / sizeof(specs[0]))

static char **
string_slot(struct config *cfg, const struct option_spec *spec)
{
    return (char **)((char *)cfg + spec->offset);
}

static unsigned long *
number_slot(struct config *cfg, const struct option_spec *spec)
{
    return (unsigned long *)((char *)cfg + spec->offset);
}

static int
list_add(struct string_list *list, const char *value)
{
    char **items = realloc(list->items, (list->count + 1) * sizeof(*items));

    if (items == NULL)
        return -1;
    list->items = items;
    list->items[list->count] = strdup(value);
    if (list->items[list->count] == NULL)
        return -1;
    list->count++;
    return 0;
}

static int
set_value(struct config *cfg, const struct option_spec *spec,
          const char *value, const char *origin, char *err, size_t errlen)
{
    if (spec->type == OPT_LIST) {
        struct string_list *list =
            (struct string_list *)((char *)cfg + spec->offset);

        if (value[0] == '\0') {
            snprintf(err, errlen, "%s needs a non-empty value", origin);
            return -1;
        }
        if (list_add(list, value) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        return 0;
    }
    if (spec->type == OPT_STRING) {
        char **slot = string_slot(cfg, spec);
        char *copy = strdup(value);

        if (copy == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        free(*slot);
        *slot = copy;
        return 0;
    }
    if (spec->type == OPT_FLAG) {
        if (strcmp(value, "1") == 0 || strcmp(value, "true") == 0) {
            *number_slot(cfg, spec) = 1;
        } else if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0) {
            *number_slot(cfg, spec) = 0;
        } else {
            snprintf(err, errlen, "invalid value '%s' for %s: expected 1, "
                                  "0, true or false", value, origin);
            return -1;
        }
        return 0;
    }

    {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(value, &end, 10);
        if (value[0] == '\0' || value[0] == '-' || *end != '\0' || errno ||
            v < spec->min || v > spec->max) {
            snprintf(err, errlen,
                     "invalid value '%s' for %s: expected %s, a whole "
                     "number from %lu to %lu",
                     value, origin, spec->arg, spec->min, spec->max);
            return -1;
        }
        *number_slot(cfg, spec) = v;
    }
    return 0;
}

/*
 * Reads a secret from a file: the first line, without its line break.
 * Error messages name the option and the file, never the contents.
 */
static int
read_secret_file(const char *path, char **out, const char *option, char *err,
                 size_t errlen)
{
    char buf[4097];
    size_t n;
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        snprintf(err, errlen, "cannot read %s %s: %s", option, path,
                 strerror(errno));
        return -1;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (buf[0] == '\0') {
        snprintf(err, errlen, "%s %s is empty", option, path);
        return -1;
    }
    free(*out);
    *out = strdup(buf);
    explicit_bzero(buf, sizeof(buf));
    if (*out == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* Adds each non-empty line of a file to list; '#' starts a comment. */
static int
read_secret_lines(const char *path, struct string_list *list, char *err,
                  size_t errlen)
{
    char line[4096];
    FILE *f = fopen(path, "r");
    size_t before = list->count;

    if (f == NULL) {
        snprintf(err, errlen, "cannot read --signature-secret-file %s: %s",
                 path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0' || line[0] == '#')
            continue;
        if (list_add(list, line) != 0) {
            fclose(f);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    explicit_bzero(line, sizeof(line));
    fclose(f);
    if (list->count == before) {
        snprintf(err, errlen, "--signature-secret-file %s has no secret",
                 path);
        return -1;
    }
    return 0;
}

static void
print_help(void)
{
    printf("Usage: callhook [OPTION]...\n"
           "       callhook status [--redis URL] [--json] UUID\n"
           "       callhook watch [--redis URL] [--stream-key KEY]\n"
           "       callhook dial --to N --from N (--text T | --ncco FILE | "
           "--answer-url URL)\n"
           "Receives Vonage Voice API webhooks and keeps each call's record "
           "in Redis.\nEach subcommand takes --help.\n\n"
           "Options (environment variable in brackets):\n");
    for (size_t i = 0; i < NSPECS; i++) {
        const struct option_spec *s = &specs[i];
        char left[64];

        snprintf(left, sizeof(left), "--%s %s", s->name, s->arg);
        if (strlen(left) > 27) {
            printf("  %s\n", left);
            left[0] = '\0';
        }
        printf("  %-28s %s\n", left, s->help);
        if (s->fallback != NULL && !s->secret)
            printf("  %-28s [%s] default: %s\n", "", s->env, s->fallback);
        else
            printf("  %-28s [%s]\n", "", s->env);
    }
    printf("  %-28s %s\n  %-28s %s\n", "--help", "print this help and exit",
           "--version", "print the version and exit");
}

enum config_result
config_load(struct config *cfg, int argc, char **argv, char *err,
            size_t errlen)
{
    struct option longopts[NSPECS + 3];
    char origin[96];
    int c;

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NSPECS; i++) {
        const char *env = getenv(specs[i].env);

        if (specs[i].fallback != NULL &&
            set_value(cfg, &specs[i], specs[i].fallback, "default", err,
                      errlen) != 0)
            return CONFIG_ERROR;
        if (env != NULL) {
            snprintf(origin, sizeof(origin), "%s", specs[i].env);
            if (set_value(cfg, &specs[i], env, origin, err, errlen) != 0)
                return CONFIG_ERROR;
        }
        longopts[i].name = specs[i].name;
        longopts[i].has_arg =
            specs[i].type == OPT_FLAG ? no_argument : required_argument;
        longopts[i].flag = NULL;
        longopts[i].val = 256 + (int)i;
    }
    longopts[NSPECS] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[NSPECS + 1] = (struct option){"version", no_argument, NULL, 'V'};
    longopts[NSPECS + 2] = (struct option){NULL, 0, NULL, 0};

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
        if (c == 'h') {
            print_help();
            return CONFIG_EXIT;
        }
        if (c == 'V') {
            printf("callhook %s\n", CALLHOOK_VERSION);
            return CONFIG_EXIT;
        }
        if (c == '?' || c == ':') {
            if (optopt >= 256)
                snprintf(err, errlen,
                         specs[optopt - 256].type == OPT_FLAG
                             ? "option --%s takes no value"
                             : "option --%s needs a value",
                         specs[optopt - 256].name);
            else
                snprintf(err, errlen,
                         "unknown option '%s'; see callhook --help",
                         argv[optind - 1]);
            return CONFIG_ERROR;
        }
        snprintf(origin, sizeof(origin), "--%s", specs[c - 256].name);
        if (set_value(cfg, &specs[c - 256], optarg ? optarg : "1", origin, err,
                      errlen) != 0)
            return CONFIG_ERROR;
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument '%s'; see callhook --help",
                 argv[optind]);
        return CONFIG_ERROR;
    }
    if (cfg->admin_token_file != NULL && cfg->admin_token_file[0] != '\0' &&
        read_secret_file(cfg->admin_token_file, &cfg->admin_token,
                         "--admin-token-file", err, errlen) != 0)
        return CONFIG_ERROR;
    if (cfg->signature_secret_file != NULL &&
        cfg->signature_secret_file[0] != '\0' &&
        read_secret_lines(cfg->signature_secret_file,
                          &cfg->signature_secrets, err, errlen) != 0)
        return CONFIG_ERROR;
    if (cfg->admin_token != NULL && cfg->admin_token[0] == '\0') {
        free(cfg->admin_token);
        cfg->admin_token = NULL;
    }
    return CONFIG_OK;
}

void
config_free(struct config *cfg)
{
    for (size_t i = 0; i < cfg->signature_secrets.count; i++) {
        explicit_bzero(cfg->signature_secrets.items[i],
                       strlen(cfg->signature_secrets.items[i]));
        free(cfg->signature_secrets.items[i]);
    }
    free(cfg->signature_secrets.items);
    cfg->signature_secrets.items = NULL;
    cfg->signature_secrets.count = 0;
    for (size_t i = 0; i < NSPECS; i++) {
        if (specs[i].type == OPT_STRING) {
            char **slot = string_slot(cfg, &specs[i]);

            free(*slot);
            *slot = NULL;
        }
    }
}
