/*
 * fakeapi-token: prints a Voice API bearer token signed with a private
 * key, for trying the fake API (or the real one) with curl.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "callhook/jwt.h"

#define KEY_FILE_MAX (64 * 1024)

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: fakeapi-token --private-key FILE --application-id ID "
            "[--ttl SECONDS]\n"
            "                     [--iat-offset SECONDS]\n"
            "\n"
            "Prints an RS256 token with application_id, iat, a random jti "
            "and\n"
            "exp = iat + ttl (default 900). --iat-offset shifts iat from "
            "now,\n"
            "for example -1000 for a token that has already expired.\n");
}

static char *
read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *text;

    if (f == NULL) {
        fprintf(stderr, "fakeapi-token: cannot open %s: %s\n", path,
                strerror(errno));
        return NULL;
    }
    text = malloc(KEY_FILE_MAX + 1);
    *len = text ? fread(text, 1, KEY_FILE_MAX + 1, f) : 0;
    fclose(f);
    if (text == NULL || *len > KEY_FILE_MAX) {
        fprintf(stderr, "fakeapi-token: %s is larger than 64 KiB\n", path);
        free(text);
        return NULL;
    }
    return text;
}

static int
parse_seconds(const char *name, const char *text, long long *out)
{
    char *end;

    errno = 0;
    *out = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || *out < -31536000 ||
        *out > 31536000) {
        fprintf(stderr,
                "fakeapi-token: invalid %s \"%s\": expected seconds within "
                "one year\n",
                name, text);
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"private-key", required_argument, NULL, 'k'},
        {"application-id", required_argument, NULL, 'a'},
        {"ttl", required_argument, NULL, 't'},
        {"iat-offset", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *key_path = NULL, *application_id = NULL;
    long long ttl = 900, offset = 0;
    char err[256], *pem, *token;
    EVP_PKEY *key;
    size_t len;
    int c;

    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'k':
            key_path = optarg;
            break;
        case 'a':
            application_id = optarg;
            break;
        case 't':
            if (parse_seconds("--ttl", optarg, &ttl) != 0)
                return 2;
            break;
        case 'o':
            if (parse_seconds("--iat-offset", optarg, &offset) != 0)
                return 2;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (key_path == NULL || application_id == NULL) {
        usage(stderr);
        return 2;
    }

    pem = read_file(key_path, &len);
    if (pem == NULL)
        return 1;
    key = jwt_load_private_key(pem, len, err, sizeof(err));
    free(pem);
    if (key == NULL) {
        fprintf(stderr, "fakeapi-token: %s: %s\n", key_path, err);
        return 1;
    }
    token = jwt_sign_rs256(key, application_id,
                           (int64_t)time(NULL) + offset, ttl, err,
                           sizeof(err));
    EVP_PKEY_free(key);
    if (token == NULL) {
        fprintf(stderr, "fakeapi-token: %s\n", err);
        return 1;
    }
    printf("%s\n", token);
    free(token);
    return 0;
}
