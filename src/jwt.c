#include "callhook/jwt.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#define HS256_SIGNATURE_LEN 32

/* RFC 7518 section 3.3: RS256 keys must have at least 2048 bits. */
#define RSA_MIN_BITS 2048

/* Maximum PEM label length accepted ("RSA PRIVATE KEY" is 15). */
#define PEM_LABEL_MAX 64

static const char base64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* ---- base64url ------------------------------------------------------- */

size_t
jwt_base64url_encode(const void *data, size_t len, char *out)
{
    const unsigned char *in = data;
    size_t n = 0, i = 0;

    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
                     in[i + 2];

        out[n++] = base64url_alphabet[v >> 18];
        out[n++] = base64url_alphabet[(v >> 12) & 63];
        out[n++] = base64url_alphabet[(v >> 6) & 63];
        out[n++] = base64url_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;

        out[n++] = base64url_alphabet[v >> 18];
        out[n++] = base64url_alphabet[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

        out[n++] = base64url_alphabet[v >> 18];
        out[n++] = base64url_alphabet[(v >> 12) & 63];
        out[n++] = base64url_alphabet[(v >> 6) & 63];
    }
    out[n] = '\0';
    return n;
}

size_t
jwt_base64url_decoded_max(size_t len)
{
    return len / 4 * 3 + len % 4 * 3 / 4 + 1;
}

static int
base64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int
jwt_base64url_decode(const char *text, size_t len, unsigned char *out,
                     size_t *out_len)
{
    uint32_t acc = 0;
    size_t n = 0;
    int bits = 0;

    if (len % 4 == 1)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int v = base64url_value((unsigned char)text[i]);

        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* The 2 or 4 bits left over must be zero, or two texts would decode
     * to the same bytes. */
    if (acc != 0)
        return -1;
    *out_len = n;
    return 0;
}

int
sha256_hex(const void *data, size_t len, char out[JWT_SHA256_HEX_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;

    out[0] = '\0';
    if (!EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) ||
        md_len != 32)
        return -1;
    for (unsigned i = 0; i < md_len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * md_len] = '\0';
    return 0;
}

int
jwt_random_uuid(char out[JWT_UUID_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    size_t n = 0;

    if (RAND_bytes(b, sizeof(b)) != 1) {
        out[0] = '\0';
        return -1;
    }
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80); /* RFC 4122 variant */
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[n++] = '-';
        out[n++] = hex[b[i] >> 4];
        out[n++] = hex[b[i] & 15];
    }
    out[n] = '\0';
    return 0;
}

const char *
jwt_strerror(enum jwt_result result)
{
    switch (result) {
    case JWT_OK:
        return "valid token";
    case JWT_ERR_TOO_LARGE:
        return "token too large: the limit is 8192 bytes";
    case JWT_ERR_FORMAT:
        return "malformed token: expected three non-empty parts separated "
               "by two dots";
    case JWT_ERR_BASE64:
        return "malformed token: a part is not unpadded base64url";
    case JWT_ERR_HEADER:
        return "invalid token header: it must be a JSON object without "
               "\"crit\"";
    case JWT_ERR_ALG:
        return "rejected algorithm: the header's \"alg\" is missing or not "
               "the one this verifier accepts";
    case JWT_ERR_TYP:
        return "invalid token header: \"typ\" must be \"JWT\"";
    case JWT_ERR_CLAIMS:
        return "invalid token claims: they must be a JSON object";
    case JWT_ERR_API_KEY:
        return "invalid \"api_key\" claim: it must be a string of 1 to 128 "
               "bytes";
    case JWT_ERR_UNKNOWN_API_KEY:
        return "unknown api_key: no secret is configured for it and there "
               "is no default secret";
    case JWT_ERR_EMPTY_SECRET:
        return "the configured signature secret is empty";
    case JWT_ERR_KEY:
        return "the verification key is not an RSA key";
    case JWT_ERR_SIGNATURE:
        return "signature mismatch";
    case JWT_ERR_ISS:
        return "invalid \"iss\" claim: it must be \"Vonage\"";
    case JWT_ERR_IAT:
        return "invalid \"iat\" claim: it is missing or not an integer";
    case JWT_ERR_EXPIRED:
        return "token expired: \"iat\" is older than the maximum age";
    case JWT_ERR_FUTURE:
        return "token issued in the future: \"iat\" is later than now plus "
               "the maximum age";
    case JWT_ERR_JTI:
        return "invalid \"jti\" claim: it must be a string of 1 to 128 "
               "bytes";
    case JWT_ERR_PAYLOAD_HASH:
        return "invalid \"payload_hash\" claim: it must be 64 lowercase hex "
               "digits";
    case JWT_ERR_APPLICATION_ID:
        return "invalid \"application_id\" claim: it must be a string of 1 "
               "to 128 bytes";
    case JWT_ERR_NOMEM:
        return "out of memory";
    case JWT_ERR_CRYPTO:
        return "OpenSSL failed while checking the signature";
    }
    return "unknown result";
}

/* ---- token parts ------------------------------------------------------ */

struct token_parts {
    const char *header, *claims, *signature;
    size_t header_len, claims_len, signature_len;
    size_t signing_input_len; /* "header.claims", from the token's start */
};

/*
 * Splits at the two dots. Only the header has to be non-empty here, so a
 * token with "alg":"none" and no signature still reaches the header check
 * and gets JWT_ERR_ALG. require_parts() rejects the empty parts later.
 */
static enum jwt_result
split_token(const char *token, size_t len, struct token_parts *parts)
{
    const char *end = token + len;
    const char *dot1, *dot2;

    if (len > JWT_TOKEN_MAX)
        return JWT_ERR_TOO_LARGE;
    dot1 = memchr(token, '.', len);
    if (dot1 == NULL)
        return JWT_ERR_FORMAT;
    dot2 = memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1));
    if (dot2 == NULL || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)))
        return JWT_ERR_FORMAT;

    parts->header = token;
    parts->header_len = (size_t)(dot1 - token);
    parts->claims = dot1 + 1;
    parts->claims_len = (size_t)(dot2 - dot1 - 1);
    parts->signature = dot2 + 1;
    parts->signature_len = (size_t)(end - dot2 - 1);
    parts->signing_input_len = (size_t)(dot2 - token);
    return parts->header_len == 0 ? JWT_ERR_FORMAT : JWT_OK;
}

static enum jwt_result
require_parts(const struct token_parts *parts)
{
    if (parts->claims_len == 0 || parts->signature_len == 0)
        return JWT_ERR_FORMAT;
    return JWT_OK;
}

/*
 * Decodes one base64url part and parses it as a JSON object. Duplicate
 * names are rejected, because two readers of the same token could
 * otherwise disagree on which value counts. not_object is the result for
 * text that decodes but is not a JSON object.
 */
static enum jwt_result
decode_object(const char *part, size_t len, enum jwt_result not_object,
              json_t **out)
{
    unsigned char *buf;
    size_t n;
    json_t *value;

    *out = NULL;
    buf = malloc(jwt_base64url_decoded_max(len));
    if (buf == NULL)
        return JWT_ERR_NOMEM;
    if (jwt_base64url_decode(part, len, buf, &n) != 0) {
        free(buf);
        return JWT_ERR_BASE64;
    }
    value = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);
    free(buf);
    if (value == NULL || !json_is_object(value)) {
        json_decref(value);
        return not_object;
    }
    *out = value;
    return JWT_OK;
}

/*
 * Checks a decoded header. "crit" names extensions the receiver must
 * understand (RFC 7515 section 4.1.11). This module implements none, so
 * any "crit" is rejected. "typ" is compared without regard to case, as
 * media types are (RFC 7515 section 4.1.9).
 */
static enum jwt_result
check_header(json_t *header, const char *alg)
{
    json_t *alg_value = json_object_get(header, "alg");
    json_t *typ = json_object_get(header, "typ");

    if (!json_is_string(alg_value) ||
        strcmp(json_string_value(alg_value), alg) != 0 ||
        json_string_length(alg_value) != strlen(alg))
        return JWT_ERR_ALG;
    if (typ != NULL &&
        (!json_is_string(typ) || json_string_length(typ) != 3 ||
         strcasecmp(json_string_value(typ), "JWT") != 0))
        return JWT_ERR_TYP;
    if (json_object_get(header, "crit") != NULL)
        return JWT_ERR_HEADER;
    return JWT_OK;
}

/* Splits the token and checks its header against alg. */
static enum jwt_result
open_header(const char *token, size_t len, const char *alg,
            struct token_parts *parts)
{
    enum jwt_result rc;
    json_t *header;

    rc = split_token(token, len, parts);
    if (rc != JWT_OK)
        return rc;
    rc = decode_object(parts->header, parts->header_len, JWT_ERR_HEADER,
                       &header);
    if (rc != JWT_OK)
        return rc;
    rc = check_header(header, alg);
    json_decref(header);
    if (rc != JWT_OK)
        return rc;
    return require_parts(parts);
}

/* open_header(), then decodes the claims. */
static enum jwt_result
open_token(const char *token, size_t len, const char *alg,
           struct token_parts *parts, json_t **claims)
{
    enum jwt_result rc;

    *claims = NULL;
    rc = open_header(token, len, alg, parts);
    if (rc != JWT_OK)
        return rc;
    return decode_object(parts->claims, parts->claims_len, JWT_ERR_CLAIMS,
                         claims);
}

/* ---- HS256 ------------------------------------------------------------ */

static enum jwt_result
check_hmac(const char *token, const struct token_parts *parts,
           const unsigned char *secret, size_t secret_len)
{
    unsigned char expected[EVP_MAX_MD_SIZE];
    unsigned char given[HS256_SIGNATURE_LEN + 3];
    unsigned expected_len = 0;
    size_t given_len;

    if (secret_len == 0)
        return JWT_ERR_EMPTY_SECRET;
    if (secret_len > INT_MAX)
        return JWT_ERR_CRYPTO;
    /* A 32-byte signature is 43 characters. Anything longer is wrong and
     * must not overrun the buffer. */
    if (parts->signature_len > 43)
        return JWT_ERR_SIGNATURE;
    if (jwt_base64url_decode(parts->signature, parts->signature_len, given,
                             &given_len) != 0)
        return JWT_ERR_BASE64;
    if (HMAC(EVP_sha256(), secret, (int)secret_len,
             (const unsigned char *)token, parts->signing_input_len,
             expected, &expected_len) == NULL ||
        expected_len != HS256_SIGNATURE_LEN)
        return JWT_ERR_CRYPTO;
    if (given_len != HS256_SIGNATURE_LEN ||
        CRYPTO_memcmp(expected, given, HS256_SIGNATURE_LEN) != 0)
        return JWT_ERR_SIGNATURE;
    return JWT_OK;
}

enum jwt_result
jwt_hs256_check_signature(const char *token, size_t len,
                          const unsigned char *secret, size_t secret_len)
{
    struct token_parts parts;
    enum jwt_result rc;

    rc = open_header(token, len, "HS256", &parts);
    if (rc != JWT_OK)
        return rc;
    return check_hmac(token, &parts, secret, secret_len);
}

/*
 * Copies an optional string claim of 1 to JWT_CLAIM_MAX bytes without NUL.
 * Returns 0 when valid or absent (out is then ""), -1 otherwise.
 */
static int
copy_string_claim(json_t *claims, const char *name, int required, char *out)
{
    json_t *value = json_object_get(claims, name);
    size_t len;

    out[0] = '\0';
    if (value == NULL)
        return required ? -1 : 0;
    if (!json_is_string(value))
        return -1;
    len = json_string_length(value);
    if (len == 0 || len > JWT_CLAIM_MAX ||
        memchr(json_string_value(value), '\0', len) != NULL)
        return -1;
    memcpy(out, json_string_value(value), len + 1);
    return 0;
}

static const struct jwt_secret *
choose_secret(const struct jwt_secret *secrets, size_t nsecrets,
              const char *api_key)
{
    const struct jwt_secret *fallback = NULL;

    for (size_t i = 0; i < nsecrets; i++) {
        if (secrets[i].api_key == NULL) {
            if (fallback == NULL)
                fallback = &secrets[i];
        } else if (api_key[0] != '\0' &&
                   strcmp(secrets[i].api_key, api_key) == 0) {
            return &secrets[i];
        }
    }
    return fallback;
}

static enum jwt_result
check_iat(json_t *claims, int64_t now, int64_t max_age, int64_t *iat)
{
    json_t *value = json_object_get(claims, "iat");
    int64_t oldest, latest;

    if (!json_is_integer(value))
        return JWT_ERR_IAT;
    *iat = (int64_t)json_integer_value(value);
    if (max_age < 0)
        max_age = 0;
    if (__builtin_sub_overflow(now, max_age, &oldest))
        oldest = INT64_MIN;
    if (__builtin_add_overflow(now, max_age, &latest))
        latest = INT64_MAX;
    if (*iat < oldest)
        return JWT_ERR_EXPIRED;
    if (*iat > latest)
        return JWT_ERR_FUTURE;
    return JWT_OK;
}

static int
is_sha256_hex(const char *s, size_t len)
{
    if (len != 64)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return 1;
}

/* The claim checks that follow a valid signature. */
static enum jwt_result
check_webhook_claims(json_t *claims, int64_t now, int64_t max_age,
                     struct jwt_webhook_claims *out)
{
    json_t *iss = json_object_get(claims, "iss");
    json_t *hash = json_object_get(claims, "payload_hash");
    enum jwt_result rc;

    if (!json_is_string(iss) || json_string_length(iss) != 6 ||
        strcmp(json_string_value(iss), "Vonage") != 0)
        return JWT_ERR_ISS;
    rc = check_iat(claims, now, max_age, &out->iat);
    if (rc != JWT_OK)
        return rc;
    if (copy_string_claim(claims, "jti", 1, out->jti) != 0)
        return JWT_ERR_JTI;
    if (!json_is_string(hash) ||
        !is_sha256_hex(json_string_value(hash), json_string_length(hash)))
        return JWT_ERR_PAYLOAD_HASH;
    memcpy(out->payload_hash, json_string_value(hash), 65);
    if (copy_string_claim(claims, "application_id", 0, out->application_id))
        return JWT_ERR_APPLICATION_ID;
    return JWT_OK;
}

enum jwt_result
jwt_verify_webhook(const char *token, size_t len,
                   const struct jwt_secret *secrets, size_t nsecrets,
                   int64_t now, int64_t max_age,
                   struct jwt_webhook_claims *out)
{
    struct jwt_webhook_claims result;
    const struct jwt_secret *secret;
    struct token_parts parts;
    json_t *claims;
    enum jwt_result rc;

    rc = open_token(token, len, "HS256", &parts, &claims);
    if (rc != JWT_OK)
        return rc;

    /* The api_key claim is read before the signature is checked, because
     * it chooses the secret. Nothing else in the claims is trusted yet. */
    memset(&result, 0, sizeof(result));
    if (copy_string_claim(claims, "api_key", 0, result.api_key) != 0) {
        rc = JWT_ERR_API_KEY;
        goto out;
    }
    secret = choose_secret(secrets, nsecrets, result.api_key);
    if (secret == NULL) {
        rc = JWT_ERR_UNKNOWN_API_KEY;
        goto out;
    }
    rc = check_hmac(token, &parts, secret->secret, secret->secret_len);
    if (rc != JWT_OK)
        goto out;
    rc = check_webhook_claims(claims, now, max_age, &result);
    if (rc == JWT_OK)
        *out = result;

out:
    json_decref(claims);
    return rc;
}

/* ---- RS256 ------------------------------------------------------------ */

static void set_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_error(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The last OpenSSL reason, a fixed string that never contains key bytes. */
static const char *
openssl_reason(void)
{
    unsigned long code = ERR_peek_last_error();
    const char *reason = code ? ERR_reason_error_string(code) : NULL;

    return reason ? reason : "no detail from OpenSSL";
}

static const char *
describe_key_type(int type)
{
    switch (type) {
    case EVP_PKEY_EC:
        return "an EC key";
    case EVP_PKEY_RSA_PSS:
        return "an RSA-PSS key, which cannot sign PKCS#1 v1.5";
    case EVP_PKEY_DSA:
        return "a DSA key";
    case EVP_PKEY_ED25519:
        return "an Ed25519 key";
    case EVP_PKEY_ED448:
        return "an Ed448 key";
    default:
        return "not an RSA key";
    }
}

/* Returns 0 when key is an RSA key fit for RS256, else -1 with a message. */
static int
check_rsa_key(EVP_PKEY *key, char *err, size_t errlen)
{
    int type = EVP_PKEY_base_id(key);
    int bits = EVP_PKEY_bits(key);

    if (type != EVP_PKEY_RSA) {
        set_error(err, errlen, "the key is %s; RS256 needs an RSA key",
                  describe_key_type(type));
        return -1;
    }
    if (bits < RSA_MIN_BITS) {
        set_error(err, errlen,
                  "the RSA key has %d bits; RS256 needs at least %d", bits,
                  RSA_MIN_BITS);
        return -1;
    }
    return 0;
}

/*
 * Checks that the private and public halves belong together. A key
 * damaged in transit can still parse, and would then sign tokens that the
 * API rejects with a bare 401.
 */
static int
check_key_pair(EVP_PKEY *key, char *err, size_t errlen)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
    int ok = ctx != NULL && EVP_PKEY_check(ctx) == 1;

    if (!ok)
        set_error(err, errlen,
                  "invalid private key: its consistency check failed (%s); "
                  "the key text may be damaged",
                  openssl_reason());
    EVP_PKEY_CTX_free(ctx);
    return ok ? 0 : -1;
}

/*
 * Turns every line-break form into LF: CR LF, a lone CR, and the escaped
 * two-character forms "\n" and "\r" that remain when a multi-line value
 * was stored on one line. Returns the new length. out needs len bytes.
 */
static size_t
unescape_line_breaks(const char *in, size_t len, char *out)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        char c = in[i];

        if (c == '\\' && i + 1 < len && (in[i + 1] == 'n' || in[i + 1] == 'r'))
            c = in[++i] == 'n' ? '\n' : '\r';
        if (c == '\r') {
            /* CR LF, escaped or not, is one break: keep only the LF. */
            if ((i + 1 < len && in[i + 1] == '\n') ||
                (i + 2 < len && in[i + 1] == '\\' && in[i + 2] == 'n'))
                continue;
            c = '\n';
        }
        out[n++] = c;
    }
    return n;
}

static int
is_base64_char(unsigned char c)
{
    return isalnum(c) || c == '+' || c == '/' || c == '=';
}

/*
 * PEM labels are short upper-case words ("RSA PRIVATE KEY"). Checking that
 * also keeps error messages, which quote the label, free of key bytes.
 */
static int
is_pem_label(const char *label, size_t len)
{
    if (len == 0 || len > PEM_LABEL_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!isupper((unsigned char)label[i]) &&
            !isdigit((unsigned char)label[i]) && label[i] != ' ')
            return 0;
    }
    return 1;
}

/*
 * Rebuilds the first PEM block of text in the canonical form OpenSSL
 * parses: BEGIN line, body in 64-column lines, END line. This also repairs
 * keys whose line breaks became spaces or vanished. Returns the length
 * written to out (which needs 2 * len + 64 bytes), or 0 with a message.
 */
static size_t
rebuild_pem(const char *text, size_t len, char *out, char *err,
            size_t errlen)
{
    static const char begin[] = "-----BEGIN ";
    static const char dashes[] = "-----";
    const char *end = text + len;
    const char *p, *label, *label_end, *body, *footer;
    char end_line[PEM_LABEL_MAX + 32];
    size_t label_len, end_line_len, n, column = 0;

    p = memmem(text, len, begin, sizeof(begin) - 1);
    if (p == NULL) {
        set_error(err, errlen,
                  "no PEM private key found: the text has no "
                  "\"-----BEGIN\" line");
        return 0;
    }
    label = p + sizeof(begin) - 1;
    label_end = memmem(label, (size_t)(end - label), dashes,
                       sizeof(dashes) - 1);
    label_len = label_end ? (size_t)(label_end - label) : 0;
    if (label_end == NULL || !is_pem_label(label, label_len)) {
        set_error(err, errlen,
                  "malformed PEM: expected a \"-----BEGIN LABEL-----\" line "
                  "with an upper-case label");
        return 0;
    }
    if (memmem(label, label_len, "ENCRYPTED", 9) != NULL) {
        set_error(err, errlen,
                  "the private key is encrypted: supply it without a "
                  "passphrase (openssl pkcs8 -topk8 -nocrypt)");
        return 0;
    }
    if (label_len < 11 ||
        memcmp(label + label_len - 11, "PRIVATE KEY", 11) != 0) {
        set_error(err, errlen,
                  "the PEM block is \"%.*s\", not a private key",
                  (int)label_len, label);
        return 0;
    }

    body = label_end + sizeof(dashes) - 1;
    end_line_len = (size_t)snprintf(end_line, sizeof(end_line),
                                    "-----END %.*s-----", (int)label_len,
                                    label);
    footer = memmem(body, (size_t)(end - body), end_line, end_line_len);
    if (footer == NULL) {
        set_error(err, errlen, "malformed PEM: the \"-----END %.*s-----\" "
                  "line is missing", (int)label_len, label);
        return 0;
    }
    if (memmem(body, (size_t)(footer - body), "Proc-Type:", 10) != NULL) {
        set_error(err, errlen,
                  "the private key is encrypted: supply it without a "
                  "passphrase (openssl rsa -in KEY -out PLAIN)");
        return 0;
    }

    n = (size_t)snprintf(out, 2 * len + 64, "-----BEGIN %.*s-----\n",
                         (int)label_len, label);
    for (p = body; p < footer; p++) {
        unsigned char c = (unsigned char)*p;

        if (isspace(c))
            continue;
        if (!is_base64_char(c)) {
            set_error(err, errlen,
                      "malformed PEM: the key body contains a character "
                      "that is not base64");
            return 0;
        }
        out[n++] = (char)c;
        if (++column == 64) {
            out[n++] = '\n';
            column = 0;
        }
    }
    if (column != 0)
        out[n++] = '\n';
    memcpy(out + n, end_line, end_line_len);
    n += end_line_len;
    out[n++] = '\n';
    return n;
}

/* Never prompts: an encrypted key that slipped past the checks fails. */
static int
no_passphrase(char *buf, int size, int rwflag, void *arg)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)arg;
    return -1;
}

/* Trims white space and one or more pairs of matching quotes. */
static void
trim_value(const char **text, size_t *len)
{
    const char *start = *text, *end = *text + *len;

    for (;;) {
        while (start < end && isspace((unsigned char)*start))
            start++;
        while (end > start && isspace((unsigned char)end[-1]))
            end--;
        if (end - start >= 2 && (*start == '"' || *start == '\'') &&
            end[-1] == *start) {
            start++;
            end--;
            continue;
        }
        break;
    }
    *text = start;
    *len = (size_t)(end - start);
}

EVP_PKEY *
jwt_load_private_key(const char *pem, size_t len, char *err, size_t errlen)
{
    char *clean = NULL, *canonical = NULL;
    size_t clean_len, canonical_len, canonical_size;
    EVP_PKEY *key = NULL;
    BIO *bio;

    if (pem == NULL || len == 0) {
        set_error(err, errlen, "the private key is empty");
        return NULL;
    }
    if (len > 1024 * 1024) {
        set_error(err, errlen, "the private key text is larger than 1 MiB");
        return NULL;
    }
    trim_value(&pem, &len);

    canonical_size = 2 * len + 64;
    clean = malloc(len + 1);
    canonical = malloc(canonical_size);
    if (clean == NULL || canonical == NULL) {
        set_error(err, errlen, "out of memory");
        goto out;
    }
    clean_len = unescape_line_breaks(pem, len, clean);
    canonical_len = rebuild_pem(clean, clean_len, canonical, err, errlen);
    if (canonical_len == 0)
        goto out;

    ERR_clear_error();
    bio = BIO_new_mem_buf(canonical, (int)canonical_len);
    if (bio == NULL) {
        set_error(err, errlen, "out of memory");
        goto out;
    }
    key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    if (key == NULL) {
        set_error(err, errlen, "invalid private key: OpenSSL could not "
                  "parse the PEM body (%s)", openssl_reason());
    } else if (check_rsa_key(key, err, errlen) != 0 ||
               check_key_pair(key, err, errlen) != 0) {
        EVP_PKEY_free(key);
        key = NULL;
    }
    ERR_clear_error();

out:
    /* Both buffers contained the private key. */
    if (clean != NULL)
        OPENSSL_cleanse(clean, len + 1);
    if (canonical != NULL)
        OPENSSL_cleanse(canonical, canonical_size);
    free(clean);
    free(canonical);
    return key;
}

/* Returns 0 when text is a JSON object, -1 otherwise. */
static int
check_json_object(const char *text, size_t len, json_t **out)
{
    json_t *value = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);

    if (value == NULL || !json_is_object(value)) {
        json_decref(value);
        return -1;
    }
    *out = value;
    return 0;
}

char *
jwt_sign_rs256_raw(EVP_PKEY *key, const char *header, size_t header_len,
                   const char *claims, size_t claims_len, char *err,
                   size_t errlen)
{
    size_t header_b64 = JWT_BASE64URL_ENCODED_SIZE(header_len);
    size_t claims_b64 = JWT_BASE64URL_ENCODED_SIZE(claims_len);
    unsigned char *signature = NULL;
    size_t signature_len = 0, n;
    EVP_MD_CTX *ctx = NULL;
    char *token = NULL;
    json_t *parsed;
    int ok = 0;

    if (check_rsa_key(key, err, errlen) != 0)
        return NULL;
    if (check_json_object(header, header_len, &parsed) != 0) {
        set_error(err, errlen, "the JWT header is not a JSON object");
        return NULL;
    }
    ok = check_header(parsed, "RS256") == JWT_OK;
    json_decref(parsed);
    if (!ok) {
        set_error(err, errlen, "the JWT header's \"alg\" must be \"RS256\"");
        return NULL;
    }
    if (check_json_object(claims, claims_len, &parsed) != 0) {
        set_error(err, errlen, "the JWT claims are not a JSON object");
        return NULL;
    }
    json_decref(parsed);

    signature_len = (size_t)EVP_PKEY_size(key);
    token = malloc(header_b64 + claims_b64 +
                   JWT_BASE64URL_ENCODED_SIZE(signature_len));
    signature = malloc(signature_len);
    ctx = EVP_MD_CTX_new();
    if (token == NULL || signature == NULL || ctx == NULL) {
        set_error(err, errlen, "out of memory");
        goto fail;
    }
    n = jwt_base64url_encode(header, header_len, token);
    token[n++] = '.';
    n += jwt_base64url_encode(claims, claims_len, token + n);

    ERR_clear_error();
    if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(ctx, signature, &signature_len,
                       (const unsigned char *)token, n) != 1) {
        set_error(err, errlen, "RS256 signing failed in OpenSSL (%s)",
                  openssl_reason());
        ERR_clear_error();
        goto fail;
    }
    token[n++] = '.';
    jwt_base64url_encode(signature, signature_len, token + n);
    EVP_MD_CTX_free(ctx);
    free(signature);
    return token;

fail:
    EVP_MD_CTX_free(ctx);
    free(signature);
    free(token);
    return NULL;
}

char *
jwt_sign_rs256(EVP_PKEY *key, const char *application_id, int64_t iat,
               int64_t ttl_seconds, char *err, size_t errlen)
{
    static const char header[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
    char jti[JWT_UUID_SIZE];
    char *claims_text, *token;
    int64_t exp;
    json_t *claims;

    if (application_id == NULL || application_id[0] == '\0') {
        set_error(err, errlen, "the application id is empty");
        return NULL;
    }
    if (ttl_seconds <= 0 || __builtin_add_overflow(iat, ttl_seconds, &exp)) {
        set_error(err, errlen,
                  "invalid token lifetime %lld s: it must be positive",
                  (long long)ttl_seconds);
        return NULL;
    }
    if (jwt_random_uuid(jti) != 0) {
        set_error(err, errlen, "RAND_bytes failed: no random jti");
        return NULL;
    }
    claims = json_pack("{s:s, s:I, s:s, s:I}", "application_id",
                       application_id, "iat", (json_int_t)iat, "jti", jti,
                       "exp", (json_int_t)exp);
    claims_text = claims ? json_dumps(claims, JSON_COMPACT) : NULL;
    json_decref(claims);
    if (claims_text == NULL) {
        set_error(err, errlen,
                  "cannot build the JWT claims: out of memory or the "
                  "application id is not valid UTF-8");
        return NULL;
    }
    token = jwt_sign_rs256_raw(key, header, sizeof(header) - 1, claims_text,
                               strlen(claims_text), err, errlen);
    free(claims_text);
    return token;
}

enum jwt_result
jwt_verify_rs256(const char *token, size_t len, EVP_PKEY *key,
                 json_t **claims)
{
    struct token_parts parts;
    unsigned char *signature = NULL;
    size_t signature_len;
    EVP_MD_CTX *ctx = NULL;
    enum jwt_result rc;
    json_t *decoded;
    int verified;

    *claims = NULL;
    if (key == NULL || EVP_PKEY_base_id(key) != EVP_PKEY_RSA)
        return JWT_ERR_KEY;
    rc = open_token(token, len, "RS256", &parts, &decoded);
    if (rc != JWT_OK)
        return rc;

    signature = malloc(jwt_base64url_decoded_max(parts.signature_len));
    ctx = EVP_MD_CTX_new();
    if (signature == NULL || ctx == NULL) {
        rc = JWT_ERR_NOMEM;
        goto out;
    }
    if (jwt_base64url_decode(parts.signature, parts.signature_len, signature,
                             &signature_len) != 0) {
        rc = JWT_ERR_BASE64;
        goto out;
    }
    if (signature_len != (size_t)EVP_PKEY_size(key)) {
        rc = JWT_ERR_SIGNATURE;
        goto out;
    }
    if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) != 1) {
        rc = JWT_ERR_CRYPTO;
        goto out;
    }
    verified = EVP_DigestVerify(ctx, signature, signature_len,
                                (const unsigned char *)token,
                                parts.signing_input_len);
    rc = verified == 1 ? JWT_OK : JWT_ERR_SIGNATURE;

out:
    ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    free(signature);
    if (rc == JWT_OK)
        *claims = decoded;
    else
        json_decref(decoded);
    return rc;
}
