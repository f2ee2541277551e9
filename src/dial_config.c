/*
 * Setup of the dialer from its options: the private key, the URLs, and
 * the startup line that logs whether the dialer is on.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "callhook/jwt.h"
#include "curlev.h"
#include "dialer.h"
#include "log.h"

#define KEY_FILE_MAX (64 * 1024)
#define URL_MAX 2048

static int
is_set(const char *value)
{
    return value != NULL && value[0] != '\0';
}

/* Reads the whole key file into *out (caller frees and wipes). */
static int
read_key_file(const char *path, char **out, size_t *len, char *err,
              size_t errlen)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    char *text;
    size_t n;

    if (f == NULL) {
        snprintf(err, errlen, "cannot read --private-key %s: %s", path,
                 strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077) != 0)
        log_warn("private key file %s is readable by group or others; "
                 "restrict it with chmod 600",
                 path);
    text = malloc(KEY_FILE_MAX + 1);
    n = text ? fread(text, 1, KEY_FILE_MAX + 1, f) : 0;
    fclose(f);
    if (text == NULL || n > KEY_FILE_MAX || n == 0) {
        snprintf(err, errlen, "invalid --private-key %s: %s", path,
                 text == NULL ? "out of memory"
                 : n == 0     ? "the file is empty"
                              : "larger than 64 KiB");
        free(text);
        return -1;
    }
    *out = text;
    *len = n;
    return 0;
}

/*
 * Loads the key from --private-key (VONAGE_PRIVATE_KEY_PATH) or, when
 * that is not set, from the PEM text in VONAGE_PRIVATE_KEY.
 */
static EVP_PKEY *
load_key(const struct config *cfg, char *err, size_t errlen)
{
    const char *env = getenv("VONAGE_PRIVATE_KEY");
    char reason[256];
    EVP_PKEY *key;
    char *text = NULL;
    size_t len;

    if (is_set(cfg->private_key)) {
        if (read_key_file(cfg->private_key, &text, &len, err, errlen) != 0)
            return NULL;
        key = jwt_load_private_key(text, len, reason, sizeof(reason));
        explicit_bzero(text, len);
        free(text);
        if (key == NULL)
            snprintf(err, errlen, "invalid --private-key %s: %s",
                     cfg->private_key, reason);
        return key;
    }
    key = jwt_load_private_key(env, strlen(env), reason, sizeof(reason));
    if (key == NULL)
        snprintf(err, errlen, "invalid VONAGE_PRIVATE_KEY: %s", reason);
    return key;
}

/* Copies url without trailing slashes; -1 unless http:// or https://. */
static int
base_url(const char *url, char *out, size_t outlen)
{
    size_t len = strlen(url);

    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return -1;
    while (len > 0 && url[len - 1] == '/')
        len--;
    if (len >= outlen || len <= strlen("https://"))
        return -1;
    memcpy(out, url, len);
    out[len] = '\0';
    return 0;
}

static int
check_signing(EVP_PKEY *key, const char *application_id, char *err,
              size_t errlen)
{
    char reason[256];
    char *token = jwt_sign_rs256(key, application_id, (int64_t)time(NULL),
                                 900, reason, sizeof(reason));

    if (token == NULL) {
        snprintf(err, errlen, "cannot sign a token with --private-key: %s",
                 reason);
        return -1;
    }
    explicit_bzero(token, strlen(token));
    free(token);
    return 0;
}

int
dialer_from_config(const struct config *cfg, struct event_base *base,
                   const struct redis_target *target, struct store *store,
                   struct ingest *ingest, struct dialer **out, char *err,
                   size_t errlen)
{
    int has_key = is_set(cfg->private_key) ||
                  is_set(getenv("VONAGE_PRIVATE_KEY"));
    struct dialer_options options;
    char api_url[URL_MAX], event_url[URL_MAX + 16], resolver[64];
    EVP_PKEY *key;

    *out = NULL;
    if (!is_set(cfg->application_id) && !has_key) {
        log_info("dialer off: set --application-id and --private-key to "
                 "place calls");
        return 0;
    }
    if (!is_set(cfg->application_id)) {
        snprintf(err, errlen, "a private key is set but --application-id "
                              "(VONAGE_APPLICATION_ID) is missing");
        return -1;
    }
    if (!has_key) {
        snprintf(err, errlen,
                 "--application-id is set but the private key is missing: "
                 "give --private-key FILE (VONAGE_PRIVATE_KEY_PATH) or the "
                 "PEM text in VONAGE_PRIVATE_KEY");
        return -1;
    }
    if (base_url(cfg->api_url, api_url, sizeof(api_url)) != 0) {
        snprintf(err, errlen, "invalid --api-url '%.200s': expected an "
                              "http:// or https:// URL", cfg->api_url);
        return -1;
    }
    if (base_url(cfg->public_url, event_url, URL_MAX) != 0) {
        snprintf(err, errlen, "invalid --public-url '%.200s': the dialer "
                              "needs an http:// or https:// URL for the "
                              "calls' event_url", cfg->public_url);
        return -1;
    }
    strcat(event_url, "/call_events");

    key = load_key(cfg, err, errlen);
    if (key == NULL)
        return -1;
    if (check_signing(key, cfg->application_id, err, errlen) != 0) {
        EVP_PKEY_free(key);
        return -1;
    }

    memset(&options, 0, sizeof(options));
    options.api_url = api_url;
    options.application_id = cfg->application_id;
    options.private_key = key;
    options.event_url = event_url;
    options.rate = (unsigned)cfg->dial_rate;
    options.concurrency = (unsigned)cfg->dial_concurrency;
    options.connect_timeout_ms = (unsigned)cfg->dial_connect_timeout;
    options.timeout_ms = (unsigned)cfg->dial_timeout;
    options.max_attempts = (unsigned)cfg->dial_max_attempts;
    options.retry_ambiguous = cfg->retry_ambiguous != 0;
    options.record_ttl = (unsigned)cfg->record_ttl;
    options.redis_timeout_ms = (unsigned)cfg->redis_timeout;
    *out = dialer_new(base, target, store, ingest, &options);
    if (*out == NULL) {
        EVP_PKEY_free(key);
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    curlev_resolver_name(resolver, sizeof(resolver));
    log_info("dialer on: api=%s rate=%lu/s concurrency=%lu resolver=%s%s",
             api_url, cfg->dial_rate, cfg->dial_concurrency, resolver,
             cfg->retry_ambiguous ? " retry-ambiguous" : "");
    if (!curlev_resolver_is_async())
        log_warn("this libcurl resolves host names synchronously: a slow "
                 "DNS answer for the API host stalls webhook handling");
    return 0;
}
