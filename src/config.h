/*
 * Command-line options and their environment variables. Every option has
 * both; the command line wins.
 */
#ifndef CALLHOOK_CONFIG_H
#define CALLHOOK_CONFIG_H

#include <stddef.h>

struct string_list {
    char **items;
    size_t count;
};

struct config {
    char *listen;
    char *admin_listen;
    char *admin_token;
    char *admin_token_file;
    char *redis_url;
    char *public_url;
    char *answer_text;
    char *answer_ncco;

    /* The outbound dialer; it runs when both application_id and a
     * private key are given. */
    char *application_id;
    char *private_key;
    char *api_url;
    unsigned long dial_rate;
    unsigned long dial_concurrency;
    unsigned long dial_connect_timeout;
    unsigned long dial_timeout;
    unsigned long dial_max_attempts;
    unsigned long retry_ambiguous;

    char *log_level;
    char *log_format;
    char *spool_dir;
    char *stream_key;
    unsigned long max_body;
    unsigned long max_headers;
    unsigned long request_timeout;
    unsigned long idle_timeout;
    unsigned long max_connections;
    unsigned long max_header_count;
    unsigned long max_uri;
    unsigned long max_requests;
    unsigned long record_ttl;
    unsigned long history_max;
    unsigned long shutdown_timeout;
    unsigned long spool_max_bytes;
    unsigned long max_pending;
    unsigned long redis_timeout;
    unsigned long stream_maxlen;
    unsigned long workers;
    struct string_list signature_secrets; /* SECRET or API_KEY:SECRET */
    char *signature_secret_file;
    unsigned long signature_max_age;
};

enum config_result {
    CONFIG_OK,
    CONFIG_EXIT,  /* --help or --version was printed */
    CONFIG_ERROR, /* message in err */
};

/*
 * Fills cfg from defaults, the environment, then argv, and reads the
 * files that options name (--admin-token-file).
 */
enum config_result config_load(struct config *cfg, int argc, char **argv,
                               char *err, size_t errlen);

void config_free(struct config *cfg);

#endif
