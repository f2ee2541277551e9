/*
 * Unit tests for src/jwt.c: base64url, SHA-256, the HS256 webhook
 * verifier, RS256 signing and verification, and private key loading.
 * Known answers come from RFC 4648 section 10, FIPS 180-2 and the
 * examples in RFC 7515 appendices A.1 and A.2.
 */
#include "callhook/jwt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/obj_mac.h>
#include <openssl/opensslv.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#define KEYS_EQUAL(a, b) (EVP_PKEY_eq((a), (b)) == 1)
#else
#define KEYS_EQUAL(a, b) (EVP_PKEY_cmp((a), (b)) == 1)
#endif

static int passed, failed;

#define CHECK(cond) check((cond), __FILE__, __LINE__, #cond)
#define CHECK_RESULT(got, want)                                               \
    check_result((got), (want), __FILE__, __LINE__, #got)

static void
check(int ok, const char *file, int line, const char *what)
{
    if (ok) {
        passed++;
        return;
    }
    failed++;
    fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
}

static void
check_result(enum jwt_result got, enum jwt_result want, const char *file,
             int line, const char *what)
{
    if (got == want) {
        passed++;
        return;
    }
    failed++;
    fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d (%s)\n", file,
            line, what, got, jwt_strerror(got), want, jwt_strerror(want));
}

/* ---- helpers ---------------------------------------------------------- */

#define NOW 1767225600 /* 2026-01-01T00:00:00Z */
#define MAX_AGE 300

static const char secret[] = "f2a8f1c6d0e94b5c8a7d3e1f0b9c2d4e";
static const char hash_abc[] =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

static char *
b64(const void *data, size_t len)
{
    char *out = malloc(JWT_BASE64URL_ENCODED_SIZE(len));

    if (out == NULL)
        abort();
    jwt_base64url_encode(data, len, out);
    return out;
}

static char *
format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
format(const char *fmt, ...)
{
    va_list ap;
    char *out;

    va_start(ap, fmt);
    if (vasprintf(&out, fmt, ap) < 0)
        abort();
    va_end(ap);
    return out;
}

/* Builds header.claims.HMAC-SHA256(key) from JSON texts. */
static char *
make_hs256(const char *header, const char *claims, const char *key)
{
    unsigned char mac[32];
    unsigned mac_len = 0;
    char *h = b64(header, strlen(header));
    char *c = b64(claims, strlen(claims));
    char *input = format("%s.%s", h, c);
    char *sig, *token;

    HMAC(EVP_sha256(), key, (int)strlen(key), (unsigned char *)input,
         strlen(input), mac, &mac_len);
    sig = b64(mac, mac_len);
    token = format("%s.%s", input, sig);
    free(h);
    free(c);
    free(input);
    free(sig);
    return token;
}

static const char hs256_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

/* Webhook claims with the given iat and extra members. */
static char *
webhook_claims(long long iat, const char *extra)
{
    return format("{\"iat\":%lld,\"jti\":\"6e1b2c44-98f3-4d6b-a2a5-"
                  "3d1c8e0f7b21\",\"iss\":\"Vonage\",\"payload_hash\":\"%s\","
                  "\"application_id\":\"aaaaaaaa-bbbb-cccc-dddd-0123456789ab\""
                  "%s}",
                  iat, hash_abc, extra);
}

static enum jwt_result
verify_one(const char *token, const char *key, struct jwt_webhook_claims *out)
{
    struct jwt_secret s = {NULL, (const unsigned char *)key, strlen(key)};

    return jwt_verify_webhook(token, strlen(token), &s, 1, NOW, MAX_AGE, out);
}

static enum jwt_result
verify_claims(const char *header, const char *claims)
{
    struct jwt_webhook_claims out;
    char *token = make_hs256(header, claims, secret);
    enum jwt_result rc = verify_one(token, secret, &out);

    free(token);
    return rc;
}

static EVP_PKEY *
generate_rsa(int bits)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, NULL);
    EVP_PKEY *key = NULL;

    if (ctx == NULL || EVP_PKEY_keygen_init(ctx) != 1 ||
        EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, bits) != 1 ||
        EVP_PKEY_keygen(ctx, &key) != 1)
        abort();
    EVP_PKEY_CTX_free(ctx);
    return key;
}

static EVP_PKEY *
generate_ec(void)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, NULL);
    EVP_PKEY *key = NULL;

    if (ctx == NULL || EVP_PKEY_keygen_init(ctx) != 1 ||
        EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx, NID_X9_62_prime256v1) !=
            1 ||
        EVP_PKEY_keygen(ctx, &key) != 1)
        abort();
    EVP_PKEY_CTX_free(ctx);
    return key;
}

enum pem_kind { PEM_PKCS1, PEM_PKCS8, PEM_PUBLIC, PEM_ENCRYPTED };

/* Returns key as NUL-terminated PEM text of the given kind. */
static char *
to_pem(EVP_PKEY *key, enum pem_kind kind)
{
    static char passphrase[] = "passphrase";
    BIO *bio = BIO_new(BIO_s_mem());
    char *data, *out;
    long len;
    int ok;

    switch (kind) {
    case PEM_PKCS1:
        ok = PEM_write_bio_PrivateKey_traditional(bio, key, NULL, NULL, 0,
                                                  NULL, NULL);
        break;
    case PEM_PKCS8:
        ok = PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
        break;
    case PEM_PUBLIC:
        ok = PEM_write_bio_PUBKEY(bio, key);
        break;
    default:
        ok = PEM_write_bio_PKCS8PrivateKey(bio, key, EVP_aes_256_cbc(), NULL,
                                           0, NULL, passphrase);
        break;
    }
    if (!ok)
        abort();
    len = BIO_get_mem_data(bio, &data);
    out = malloc((size_t)len + 1);
    memcpy(out, data, (size_t)len);
    out[len] = '\0';
    BIO_free(bio);
    return out;
}

static EVP_PKEY *
public_only(EVP_PKEY *key)
{
    char *pem = to_pem(key, PEM_PUBLIC);
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pub = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);

    BIO_free(bio);
    free(pem);
    if (pub == NULL)
        abort();
    return pub;
}

/* Replaces every occurrence of from with to; the caller frees. */
static char *
replace_all(const char *text, const char *from, const char *to)
{
    size_t from_len = strlen(from), to_len = strlen(to), count = 0;
    const char *p;
    char *out, *o;

    for (p = strstr(text, from); p != NULL; p = strstr(p + from_len, from))
        count++;
    out = malloc(strlen(text) + count * to_len + 1);
    o = out;
    while ((p = strstr(text, from)) != NULL) {
        memcpy(o, text, (size_t)(p - text));
        o += p - text;
        memcpy(o, to, to_len);
        o += to_len;
        text = p + from_len;
    }
    strcpy(o, text);
    return out;
}

/* True when err repeats 16 or more consecutive bytes of the PEM body. */
static int
echoes_key(const char *err, const char *pem)
{
    const char *body = strstr(pem, "-----\n");

    if (body == NULL)
        return 0;
    body += 6;
    for (size_t i = 0; body[i + 16] != '\0' && body[i + 16] != '-'; i++) {
        char probe[17];

        memcpy(probe, body + i, 16);
        probe[16] = '\0';
        if (strstr(err, probe) != NULL)
            return 1;
    }
    return 0;
}

/* ---- base64url, SHA-256, UUID ----------------------------------------- */

static void
test_base64url_vectors(void)
{
    /* RFC 4648 section 10, without padding. */
    static const struct {
        const char *plain, *encoded;
    } vectors[] = {
        {"", ""},         {"f", "Zg"},         {"fo", "Zm8"},
        {"foo", "Zm9v"},  {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"},
        {"foobar", "Zm9vYmFy"},
    };

    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        char enc[16];
        unsigned char dec[16];
        size_t n = 99;
        size_t len = strlen(vectors[i].plain);

        CHECK(jwt_base64url_encode(vectors[i].plain, len, enc) ==
              strlen(vectors[i].encoded));
        CHECK(strcmp(enc, vectors[i].encoded) == 0);
        CHECK(jwt_base64url_decode(vectors[i].encoded,
                                   strlen(vectors[i].encoded), dec, &n) == 0);
        CHECK(n == len);
        CHECK(memcmp(dec, vectors[i].plain, len) == 0);
    }

    /* The two characters that differ from standard base64. */
    {
        static const unsigned char bytes[] = {0xfb, 0xff, 0xbf};
        char enc[8];

        jwt_base64url_encode(bytes, sizeof(bytes), enc);
        CHECK(strcmp(enc, "-_-_") == 0);
    }
}

static void
test_base64url_rejects(void)
{
    static const char *const bad[] = {
        "Zg==",  /* padding */
        "Zg=",   /* padding */
        "Zm9v=", /* padding on a full group */
        "Z",     /* length 1 mod 4 */
        "Zm9vY", /* length 1 mod 4 */
        "Zh",    /* unused low bits set: canonical is "Zg" */
        "Zm9",   /* unused low bits set: canonical is "Zm8" */
        "Zm+v",  /* standard base64 alphabet */
        "Zm/v",  /* standard base64 alphabet */
        "Zm 9v", /* white space */
        "Zm9v\n",
        "Zm9!",
    };
    unsigned char out[16];
    size_t n;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = jwt_base64url_decode(bad[i], strlen(bad[i]), out, &n);

        if (rc != -1)
            fprintf(stderr, "accepted bad base64url \"%s\"\n", bad[i]);
        CHECK(rc == -1);
    }
    CHECK(jwt_base64url_decode("Zm\0v", 4, out, &n) == -1);
    CHECK(jwt_base64url_decoded_max(0) >= 1);
    CHECK(jwt_base64url_decoded_max(43) >= 32);
}

static void
test_base64url_round_trip(void)
{
    unsigned char data[64], back[64];
    char enc[JWT_BASE64URL_ENCODED_SIZE(64)];

    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 37 + 11);
    for (size_t len = 0; len <= sizeof(data); len++) {
        size_t enc_len = jwt_base64url_encode(data, len, enc);
        size_t n = 999;

        CHECK(enc_len + 1 == JWT_BASE64URL_ENCODED_SIZE(len));
        CHECK(jwt_base64url_decoded_max(enc_len) >= len);
        CHECK(jwt_base64url_decode(enc, enc_len, back, &n) == 0);
        CHECK(n == len);
        CHECK(memcmp(back, data, len) == 0);
    }
}

static void
test_sha256_hex(void)
{
    char out[JWT_SHA256_HEX_SIZE];

    CHECK(sha256_hex("", 0, out) == 0);
    CHECK(strcmp(out, "e3b0c44298fc1c149afbf4c8996fb924"
                      "27ae41e4649b934ca495991b7852b855") == 0);
    CHECK(sha256_hex("abc", 3, out) == 0);
    CHECK(strcmp(out, hash_abc) == 0);
}

static void
test_random_uuid(void)
{
    char a[JWT_UUID_SIZE], b[JWT_UUID_SIZE];

    CHECK(jwt_random_uuid(a) == 0);
    CHECK(jwt_random_uuid(b) == 0);
    CHECK(strlen(a) == 36);
    CHECK(a[8] == '-');
    CHECK(a[13] == '-');
    CHECK(a[18] == '-');
    CHECK(a[23] == '-');
    CHECK(a[14] == '4');
    CHECK(strchr("89ab", a[19]) != NULL);
    CHECK(strcmp(a, b) != 0);
}

static void
test_strerror(void)
{
    for (int r = JWT_OK; r <= JWT_ERR_CRYPTO; r++) {
        const char *msg = jwt_strerror((enum jwt_result)r);

        CHECK(msg != NULL);
        CHECK(msg[0] != '\0');
        CHECK(strcmp(msg, "unknown result") != 0);
        for (int k = JWT_OK; k < r; k++)
            CHECK(strcmp(msg, jwt_strerror((enum jwt_result)k)) != 0);
    }
    CHECK(strstr(jwt_strerror(JWT_ERR_TOO_LARGE), "too large") != NULL);
    CHECK(strncmp(jwt_strerror(JWT_ERR_UNKNOWN_API_KEY), "unknown api_key",
                  15) == 0);
}

/* ---- RFC 7515 appendix A.1: HS256 ------------------------------------- */

static const char rfc_a1_token[] =
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxl"
    "LmNvbS9pc19yb290Ijp0cnVlfQ"
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/* The JWK "k" of RFC 7515 appendix A.1: a 64-byte HMAC key. */
static const char rfc_a1_key[] =
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUu"
    "TwjAzZr1Z9CAow";

static void
test_rfc7515_a1(void)
{
    unsigned char key[64];
    size_t key_len = 0;
    char *tampered;
    struct jwt_webhook_claims out;
    struct jwt_secret s;

    CHECK(jwt_base64url_decode(rfc_a1_key, strlen(rfc_a1_key), key,
                               &key_len) == 0);
    CHECK(key_len == 64);
    CHECK_RESULT(jwt_hs256_check_signature(rfc_a1_token, strlen(rfc_a1_token),
                                           key, key_len),
                 JWT_OK);

    key[0] ^= 1;
    CHECK_RESULT(jwt_hs256_check_signature(rfc_a1_token, strlen(rfc_a1_token),
                                           key, key_len),
                 JWT_ERR_SIGNATURE);
    key[0] ^= 1;

    /* 'k' -> 'o' in the last character keeps its two unused bits zero,
     * so the signature stays canonical base64url. */
    tampered = strdup(rfc_a1_token);
    tampered[strlen(tampered) - 1] = 'o';
    CHECK_RESULT(jwt_hs256_check_signature(tampered, strlen(tampered), key,
                                           key_len),
                 JWT_ERR_SIGNATURE);
    free(tampered);

    /* The full verifier accepts the signature, then rejects iss "joe". */
    s.api_key = NULL;
    s.secret = key;
    s.secret_len = key_len;
    CHECK_RESULT(jwt_verify_webhook(rfc_a1_token, strlen(rfc_a1_token), &s, 1,
                                    1300819380, MAX_AGE, &out),
                 JWT_ERR_ISS);
}

/* ---- RFC 7515 appendix A.2: RS256 ------------------------------------- */

static const char rfc_a2_signing_input[] =
    "eyJhbGciOiJSUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxl"
    "LmNvbS9pc19yb290Ijp0cnVlfQ";

static const char rfc_a2_signature[] =
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4B"
    "h-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZ"
    "LgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_d"
    "O--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6"
    "LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

/* The header and payload of A.2 as bytes, before base64url. */
static const char rfc_a2_header[] = "{\"alg\":\"RS256\"}";
static const char rfc_a2_payload[] =
    "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n "
    "\"http://example.com/is_root\":true}";

/*
 * The RSA key of appendix A.2 in PKCS#1 PEM, encoded from its JWK members
 * n, e, d, p, q, dp, dq and qi. test_rfc7515_a2_key() rebuilds the key from
 * those members on OpenSSL 3 and checks that both are the same key.
 */
static const char rfc_a2_pem[] =
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd/wWJcyQoTbji9k0\n"
    "l8W26mPddxHmfHQp+Vaw+4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL+yRT+SFd2lZS+pC\n"
    "gNMsD1W/YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb/7OMg0LOL+bSf63kpaSHSX\n"
    "ndS5z5rexMdbBYUsLA9e+KXBdQOS+UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uD\n"
    "Zlxvb3qCo5ZwKh9kG4LT6/I5IhlJH7aGhyxXFvUK+DWNmoudF8NAco9/h9iaGNj8\n"
    "q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQIDAQABAoIBABKucaRpzQorw35S\n"
    "bEUAVx8dYXUdZOlJcHtiWQ+dC6V8ljxAHj/PLyzTveyI5QO/xkObCyjIL303l2cf\n"
    "UhPu2MFaJdjVzqACXuOrLot/eSFvxjvqVidTtAZExqFRJ9mylUVAoLvhowVWmC1O\n"
    "n95fZCXxTUtxNEG1Xcc7m0rtzJKs45J+N/V9DP1edYH6USyPSWGp6wuA+KgHRnKK\n"
    "Vf9GRx80JQY7nVNkL17eHoTWEwga+lwi0FEoW9Y7lDtWXYmKBWhUE+U8PGxlJf8f\n"
    "40493HDw1WRQ/aSLoS4QTp3rn7gYgeHEvfJdkkf0UMhlknlo53M09EFPdadQ4TlU\n"
    "bjqKc50CgYEA4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH/5IB3jw3bcxGn6QLvnE\n"
    "tfdUdiYrqBdss1l58BQ3KhooKeQTa9AB0Hw/Py5PJdTJNPY8cQn7ouZ2KKDcmnPG\n"
    "BY5t7yLc1QlQ5xHdwW1VhvKn+nXqhJTBgIPgtldC+KDV5z+y2XDwGUcCgYEAuQPE\n"
    "fgmVtjL0Uyyx88GZFF1fOunH3+7cepKmtH4pxhtCoHqpWmT8YAmZxaewHgHAjLYs\n"
    "p1ZSe7zFYHj7C6ul7TjeLQeZD/YwD66t62wDmpe/HlB+TnBA+njbglfIsRLtXlnD\n"
    "zQkv5dTltRJ11BKBBypeeF6689rjcJIDEz9RWdcCgYAHAp9XcCSrn8wVkMVkKdb7\n"
    "DOX4IKjzdahm+ctDAJN4O/y7OW5FKebvUjdAIt2GuoTZ71iTG+7F0F+lP88jtjP4\n"
    "U4qe7VHoewl4MKOfXZKTe+YCS1XbNvfgwJ3Ltyl1OH9hWvu2yza7q+d5PCsDzqtm\n"
    "27kxuvULVeya+TEdAB1ijQKBgQCH/3r6YrVH/uCWGy6bzV1nGNOdjKc9tmkfOJmN\n"
    "54dxdixdpozCQ6U4OxZrsj3FcOhHBsqAHvX2uuYjagqvo3cOj1TRqNocX40omfCC\n"
    "Mx3bD1yPPf/6TI2XECva/ggqEY2mYzmIiA5LVVmc5nrybr+lssFKneeyxN2Wq93S\n"
    "0iJMdQKBgCGHewxzoa1r8ZMD0LETNrToK423K377UCYqXfg5XMclbrjPbEC3YI1Z\n"
    "NqMtuhdBJqUnBi6tjKMF+34Xf0CUN8ncuXGO2CAYvO8PdyCixHX52ybaDjy1FtCE\n"
    "6yUXjoKNXKvUm7MWGsAYH6f4IegOetN5NvmUMFStCSkh7ixZLkN1\n"
    "-----END RSA PRIVATE KEY-----\n";

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
/* The JWK members of the appendix A.2 key, in the order of rfc_a2_names. */
static const char *const rfc_a2_jwk[] = {
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qP"
    "CJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47s"
    "oMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2"
    "R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoud"
    "F8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ",
    "AQAB",
    "Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97IjlA7_GQ5sLKMgv"
    "fTeXZx9SE-7YwVol2NXOoAJe46sui395IW_GO-pWJ1O0BkTGoVEn2bKVRUCgu-GjBVaYLU6f"
    "3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn439X0M_V51gfpRLI9JYanrC4D4qAdGcopV_0ZHHzQl"
    "BjudU2QvXt4ehNYTCBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPDVZFD9pIuh"
    "LhBOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ",
    "4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdiYrqBdss1l58BQ3"
    "KhooKeQTa9AB0Hw_Py5PJdTJNPY8cQn7ouZ2KKDcmnPGBY5t7yLc1QlQ5xHdwW1VhvKn-nXq"
    "hJTBgIPgtldC-KDV5z-y2XDwGUc",
    "uQPEfgmVtjL0Uyyx88GZFF1fOunH3-7cepKmtH4pxhtCoHqpWmT8YAmZxaewHgHAjLYsp1ZS"
    "e7zFYHj7C6ul7TjeLQeZD_YwD66t62wDmpe_HlB-TnBA-njbglfIsRLtXlnDzQkv5dTltRJ1"
    "1BKBBypeeF6689rjcJIDEz9RWdc",
    "BwKfV3Akq5_MFZDFZCnW-wzl-CCo83WoZvnLQwCTeDv8uzluRSnm71I3QCLdhrqE2e9Ykxvu"
    "xdBfpT_PI7Yz-FOKnu1R6HsJeDCjn12Sk3vmAktV2zb34MCdy7cpdTh_YVr7tss2u6vneTwr"
    "A86rZtu5Mbr1C1XsmvkxHQAdYo0",
    "h_96-mK1R_7glhsum81dZxjTnYynPbZpHziZjeeHcXYsXaaMwkOlODsWa7I9xXDoRwbKgB71"
    "9rrmI2oKr6N3Do9U0ajaHF-NKJnwgjMd2w9cjz3_-kyNlxAr2v4IKhGNpmM5iIgOS1VZnOZ6"
    "8m6_pbLBSp3nssTdlqvd0tIiTHU",
    "IYd7DHOhrWvxkwPQsRM2tOgrjbcrfvtQJipd-DlcxyVuuM9sQLdgjVk2oy26F0EmpScGLq2M"
    "owX7fhd_QJQ3ydy5cY7YIBi87w93IKLEdfnbJtoOPLUW0ITrJReOgo1cq9SbsxYawBgfp_gh"
    "6A5603k2-ZQwVK0JKSHuLFkuQ3U",
};

static const char *const rfc_a2_names[] = {
    OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_E,
    OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,
    OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
    OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
};

static EVP_PKEY *
rfc_a2_key_from_jwk(void)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *numbers[8] = {NULL};
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *key = NULL;

    for (size_t i = 0; i < 8; i++) {
        unsigned char buf[512];
        size_t n;

        if (jwt_base64url_decode(rfc_a2_jwk[i], strlen(rfc_a2_jwk[i]), buf,
                                 &n) != 0)
            goto out;
        numbers[i] = BN_bin2bn(buf, (int)n, NULL);
        if (numbers[i] == NULL ||
            !OSSL_PARAM_BLD_push_BN(bld, rfc_a2_names[i], numbers[i]))
            goto out;
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params) != 1)
        key = NULL;

out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    for (size_t i = 0; i < 8; i++)
        BN_free(numbers[i]);
    OSSL_PARAM_BLD_free(bld);
    return key;
}
#endif

static void
test_rfc7515_a2_key(void)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    char err[256] = "";
    EVP_PKEY *pem_key = jwt_load_private_key(rfc_a2_pem, strlen(rfc_a2_pem),
                                             err, sizeof(err));
    EVP_PKEY *jwk_key = rfc_a2_key_from_jwk();

    CHECK(pem_key != NULL);
    CHECK(jwk_key != NULL);
    if (pem_key != NULL && jwk_key != NULL)
        CHECK(KEYS_EQUAL(pem_key, jwk_key));
    EVP_PKEY_free(pem_key);
    EVP_PKEY_free(jwk_key);
#else
    fprintf(stderr, "note: OpenSSL 1.1 has no EVP_PKEY_fromdata; the A.2 "
                    "key is checked only through its signature\n");
#endif
}

static void
test_rfc7515_a2(void)
{
    char err[256] = "";
    EVP_PKEY *key = jwt_load_private_key(rfc_a2_pem, strlen(rfc_a2_pem), err,
                                         sizeof(err));
    char *expected = format("%s.%s", rfc_a2_signing_input, rfc_a2_signature);
    char *token;
    json_t *claims = NULL;

    CHECK(key != NULL);
    if (key == NULL) {
        fprintf(stderr, "A.2 key: %s\n", err);
        free(expected);
        return;
    }

    /* PKCS#1 v1.5 signatures are deterministic: the bytes must match. */
    token = jwt_sign_rs256_raw(key, rfc_a2_header, strlen(rfc_a2_header),
                               rfc_a2_payload, strlen(rfc_a2_payload), err,
                               sizeof(err));
    CHECK(token != NULL);
    if (token != NULL)
        CHECK(strcmp(token, expected) == 0);
    free(token);

    CHECK_RESULT(jwt_verify_rs256(expected, strlen(expected), key, &claims),
                 JWT_OK);
    CHECK(claims != NULL);
    CHECK(strcmp(json_string_value(json_object_get(claims, "iss")), "joe") ==
          0);
    CHECK(json_integer_value(json_object_get(claims, "exp")) == 1300819380);
    json_decref(claims);

    /* The A.1 token is HS256: the RS256 verifier must not accept it. */
    CHECK_RESULT(
        jwt_verify_rs256(rfc_a1_token, strlen(rfc_a1_token), key, &claims),
        JWT_ERR_ALG);
    CHECK(claims == NULL);

    free(expected);
    EVP_PKEY_free(key);
}

/* ---- HS256 webhook tokens ------------------------------------------- */

static void
test_webhook_valid(void)
{
    struct jwt_webhook_claims out;
    char *claims = webhook_claims(NOW - 10, ",\"api_key\":\"abcd1234\"");
    char *token = make_hs256(hs256_header, claims, secret);

    CHECK_RESULT(verify_one(token, secret, &out), JWT_OK);
    CHECK(out.iat == NOW - 10);
    CHECK(strcmp(out.jti, "6e1b2c44-98f3-4d6b-a2a5-3d1c8e0f7b21") == 0);
    CHECK(strcmp(out.payload_hash, hash_abc) == 0);
    CHECK(strcmp(out.api_key, "abcd1234") == 0);
    CHECK(strcmp(out.application_id,
                 "aaaaaaaa-bbbb-cccc-dddd-0123456789ab") == 0);
    free(token);
    free(claims);

    /* Optional claims absent: returned as empty strings. */
    token = make_hs256("{\"alg\":\"HS256\"}",
                       "{\"iat\":1767225600,\"jti\":\"x\",\"iss\":\"Vonage\","
                       "\"payload_hash\":\"ba7816bf8f01cfea414140de5dae2223b0"
                       "0361a396177a9cb410ff61f20015ad\"}",
                       secret);
    CHECK_RESULT(verify_one(token, secret, &out), JWT_OK);
    CHECK(out.api_key[0] == '\0');
    CHECK(out.application_id[0] == '\0');
    free(token);
}

static void
test_webhook_iat_window(void)
{
    static const struct {
        long long offset;
        enum jwt_result want;
    } cases[] = {
        {0, JWT_OK},
        {-MAX_AGE, JWT_OK},
        {-MAX_AGE - 1, JWT_ERR_EXPIRED},
        {-86400, JWT_ERR_EXPIRED},
        {MAX_AGE, JWT_OK},
        {MAX_AGE + 1, JWT_ERR_FUTURE},
        {86400, JWT_ERR_FUTURE},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *claims = webhook_claims(NOW + cases[i].offset, "");

        CHECK_RESULT(verify_claims(hs256_header, claims), cases[i].want);
        free(claims);
    }
}

static void
test_webhook_signature(void)
{
    struct jwt_webhook_claims out;
    char *claims = webhook_claims(NOW, "");
    char *token = make_hs256(hs256_header, claims, secret);
    char *forged_claims = webhook_claims(NOW, ",\"api_key\":\"evil\"");
    char *forged_part = b64(forged_claims, strlen(forged_claims));
    char *first_dot = strchr(token, '.');
    char *second_dot = strchr(first_dot + 1, '.');
    char *tampered;

    memset(&out, 0x5a, sizeof(out));
    CHECK_RESULT(verify_one(token, "another secret", &out),
                 JWT_ERR_SIGNATURE);
    CHECK(out.iat == 0x5a5a5a5a5a5a5a5a); /* untouched on failure */

    /* Claims replaced, signature kept. */
    tampered = format("%.*s.%s%s", (int)(first_dot - token), token,
                      forged_part, second_dot);
    CHECK_RESULT(verify_one(tampered, secret, &out), JWT_ERR_SIGNATURE);
    free(tampered);

    /* Signature cut from 43 to 40 characters, still valid base64url. */
    tampered = strndup(token, strlen(token) - 3);
    CHECK_RESULT(verify_one(tampered, secret, &out), JWT_ERR_SIGNATURE);
    free(tampered);

    /* Signature cut to length 1 mod 4: not base64url at all. */
    tampered = strndup(token, strlen(token) - 2);
    CHECK_RESULT(verify_one(tampered, secret, &out), JWT_ERR_BASE64);
    free(tampered);

    /* Signature longer than 32 bytes. */
    tampered = format("%sAAAA", token);
    CHECK_RESULT(verify_one(tampered, secret, &out), JWT_ERR_SIGNATURE);
    free(tampered);

    CHECK_RESULT(verify_one(token, "", &out), JWT_ERR_EMPTY_SECRET);

    /* The signature layer alone does not decode the claims. */
    tampered = make_hs256(hs256_header, "[1]", secret);
    CHECK_RESULT(jwt_hs256_check_signature(tampered, strlen(tampered),
                                           (const unsigned char *)secret,
                                           strlen(secret)),
                 JWT_OK);
    free(tampered);

    free(forged_part);
    free(forged_claims);
    free(claims);
    free(token);
}

static void
test_webhook_algorithms(void)
{
    struct jwt_webhook_claims out;
    char *claims = webhook_claims(NOW, "");
    const char none[] = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
    char *h = b64(none, strlen(none));
    char *c = b64(claims, strlen(claims));
    char *token;

    /* "none" with an empty signature and with a made-up one. */
    token = format("%s.%s.", h, c);
    CHECK_RESULT(verify_one(token, secret, &out), JWT_ERR_ALG);
    free(token);
    token = format("%s.%s.AAAA", h, c);
    CHECK_RESULT(verify_one(token, secret, &out), JWT_ERR_ALG);
    free(token);

    /* RS256 header, HMAC'd with the secret as if it were a public key. */
    token = make_hs256("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", claims, secret);
    CHECK_RESULT(verify_one(token, secret, &out), JWT_ERR_ALG);
    free(token);

    CHECK_RESULT(verify_claims("{\"alg\":\"HS512\"}", claims), JWT_ERR_ALG);
    CHECK_RESULT(verify_claims("{\"alg\":\"hs256\"}", claims), JWT_ERR_ALG);
    CHECK_RESULT(verify_claims("{\"alg\":\"HS256 \"}", claims), JWT_ERR_ALG);
    /* jansson refuses "\u0000" in strings, so this never reaches "alg". */
    CHECK_RESULT(verify_claims("{\"alg\":\"HS256\\u0000\"}", claims),
                 JWT_ERR_HEADER);
    CHECK_RESULT(verify_claims("{\"alg\":256}", claims), JWT_ERR_ALG);
    CHECK_RESULT(verify_claims("{\"typ\":\"JWT\"}", claims), JWT_ERR_ALG);
    CHECK_RESULT(verify_claims("{\"alg\":\"HS256\",\"typ\":\"JWS\"}", claims),
                 JWT_ERR_TYP);
    CHECK_RESULT(verify_claims("{\"alg\":\"HS256\",\"typ\":1}", claims),
                 JWT_ERR_TYP);
    CHECK_RESULT(verify_claims("{\"alg\":\"HS256\",\"typ\":\"jwt\"}", claims),
                 JWT_OK);
    CHECK_RESULT(
        verify_claims("{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}",
                      claims),
        JWT_ERR_HEADER);
    CHECK_RESULT(verify_claims("[\"HS256\"]", claims), JWT_ERR_HEADER);
    CHECK_RESULT(verify_claims("not json", claims), JWT_ERR_HEADER);
    CHECK_RESULT(
        verify_claims("{\"alg\":\"HS256\",\"alg\":\"none\"}", claims),
        JWT_ERR_HEADER);

    free(h);
    free(c);
    free(claims);
}

static void
test_webhook_shape(void)
{
    struct jwt_webhook_claims out;
    char *claims = webhook_claims(NOW, "");
    char *token = make_hs256(hs256_header, claims, secret);
    char *first_dot = strchr(token, '.');
    char *bad;

    bad = strndup(token, (size_t)(first_dot - token));
    CHECK_RESULT(verify_one(bad, secret, &out), JWT_ERR_FORMAT);
    free(bad);

    bad = strndup(token, (size_t)(first_dot - token) + 1);
    CHECK_RESULT(verify_one(bad, secret, &out), JWT_ERR_FORMAT);
    free(bad);

    bad = strndup(token, (size_t)(strrchr(token, '.') - token));
    CHECK_RESULT(verify_one(bad, secret, &out), JWT_ERR_FORMAT);
    free(bad);

    bad = format("%s.", token);
    CHECK_RESULT(verify_one(bad, secret, &out), JWT_ERR_FORMAT);
    free(bad);

    bad = format("%s.abc", token);
    CHECK_RESULT(verify_one(bad, secret, &out), JWT_ERR_FORMAT);
    free(bad);

    bad = format(".%s", token);
    CHECK_RESULT(verify_one(bad, secret, &out), JWT_ERR_FORMAT);
    free(bad);

    bad = format("%.*s..%s", (int)(first_dot - token), token,
                 strrchr(token, '.') + 1);
    CHECK_RESULT(verify_one(bad, secret, &out), JWT_ERR_FORMAT);
    free(bad);

    CHECK_RESULT(verify_one("", secret, &out), JWT_ERR_FORMAT);
    CHECK_RESULT(verify_one("..", secret, &out), JWT_ERR_FORMAT);

    /* Padding and the standard alphabet are not base64url. */
    bad = format("%.*s=%s", (int)(first_dot - token), token, first_dot);
    CHECK_RESULT(verify_one(bad, secret, &out), JWT_ERR_BASE64);
    free(bad);
    bad = format("eyJ+%s", token);
    CHECK_RESULT(verify_one(bad, secret, &out), JWT_ERR_BASE64);
    free(bad);

    /* A NUL inside the token is not base64url either. */
    bad = strdup(token);
    bad[5] = '\0';
    CHECK_RESULT(jwt_verify_webhook(bad, strlen(token),
                                    &(struct jwt_secret){NULL,
                                        (const unsigned char *)secret,
                                        strlen(secret)},
                                    1, NOW, MAX_AGE, &out),
                 JWT_ERR_BASE64);
    free(bad);

    free(claims);
    free(token);
}

/* Returns a valid webhook token with a "pad" claim of fill bytes. */
static char *
padded_token(size_t fill)
{
    char *padding = malloc(fill + 1);
    char *extra, *claims, *token;

    memset(padding, 'x', fill);
    padding[fill] = '\0';
    extra = format(",\"pad\":\"%s\"", padding);
    claims = webhook_claims(NOW, extra);
    token = make_hs256(hs256_header, claims, secret);
    free(padding);
    free(extra);
    free(claims);
    return token;
}

static void
test_webhook_size_limit(void)
{
    struct jwt_webhook_claims out;
    size_t fill = 0;
    char *token = NULL;

    /* Grow the padding until the token is exactly JWT_TOKEN_MAX bytes;
     * base64url lengths skip only values of 1 mod 4, so one fits. */
    for (size_t n = 5000; n < 6200 && fill == 0; n++) {
        token = padded_token(n);
        if (strlen(token) == JWT_TOKEN_MAX)
            fill = n;
        else
            free(token);
    }
    CHECK(fill != 0);
    if (fill == 0)
        return;
    CHECK_RESULT(verify_one(token, secret, &out), JWT_OK);
    free(token);

    token = padded_token(fill + 1);
    CHECK(strlen(token) > JWT_TOKEN_MAX);
    CHECK_RESULT(verify_one(token, secret, &out), JWT_ERR_TOO_LARGE);
    free(token);
}

static void
test_webhook_claims(void)
{
    static const struct {
        const char *claims;
        enum jwt_result want;
    } cases[] = {
        {"{\"iat\":1767225600,\"jti\":\"j\",\"payload_hash\":\"%s\"}",
         JWT_ERR_ISS},
        {"{\"iss\":\"vonage\",\"iat\":1767225600,\"jti\":\"j\","
         "\"payload_hash\":\"%s\"}",
         JWT_ERR_ISS},
        {"{\"iss\":null,\"iat\":1767225600,\"jti\":\"j\","
         "\"payload_hash\":\"%s\"}",
         JWT_ERR_ISS},
        {"{\"iss\":\"Vonage\",\"jti\":\"j\",\"payload_hash\":\"%s\"}",
         JWT_ERR_IAT},
        {"{\"iss\":\"Vonage\",\"iat\":\"1767225600\",\"jti\":\"j\","
         "\"payload_hash\":\"%s\"}",
         JWT_ERR_IAT},
        {"{\"iss\":\"Vonage\",\"iat\":1767225600.5,\"jti\":\"j\","
         "\"payload_hash\":\"%s\"}",
         JWT_ERR_IAT},
        {"{\"iss\":\"Vonage\",\"iat\":1767225600,\"payload_hash\":\"%s\"}",
         JWT_ERR_JTI},
        {"{\"iss\":\"Vonage\",\"iat\":1767225600,\"jti\":\"\","
         "\"payload_hash\":\"%s\"}",
         JWT_ERR_JTI},
        {"{\"iss\":\"Vonage\",\"iat\":1767225600,\"jti\":7,"
         "\"payload_hash\":\"%s\"}",
         JWT_ERR_JTI},
        /* jansson refuses "\u0000", so the claims are not an object. */
        {"{\"iss\":\"Vonage\",\"iat\":1767225600,\"jti\":\"a\\u0000b\","
         "\"payload_hash\":\"%s\"}",
         JWT_ERR_CLAIMS},
        {"{\"iss\":\"Vonage\",\"iat\":1767225600,\"jti\":\"j\","
         "\"application_id\":42,\"payload_hash\":\"%s\"}",
         JWT_ERR_APPLICATION_ID},
        {"{\"iss\":\"Vonage\",\"iat\":1767225600,\"jti\":\"j\","
         "\"payload_hash\":\"%s\",\"api_key\":\"\"}",
         JWT_ERR_API_KEY},
        {"{\"iss\":\"Vonage\",\"iat\":1767225600,\"jti\":\"j\","
         "\"payload_hash\":\"%s\",\"api_key\":12345}",
         JWT_ERR_API_KEY},
        {"{\"iss\":\"Vonage\",\"iss\":\"Vonage\",\"iat\":1767225600,"
         "\"jti\":\"j\",\"payload_hash\":\"%s\"}",
         JWT_ERR_CLAIMS},
        {"[\"%s\"]", JWT_ERR_CLAIMS},
        {"\"%s\"", JWT_ERR_CLAIMS},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *claims = replace_all(cases[i].claims, "%s", hash_abc);
        enum jwt_result rc = verify_claims(hs256_header, claims);

        if (rc != cases[i].want)
            fprintf(stderr, "claims case %zu: %s\n", i, claims);
        CHECK_RESULT(rc, cases[i].want);
        free(claims);
    }
}

static void
test_webhook_jti_length(void)
{
    char jti[JWT_CLAIM_MAX + 2];
    char *claims;

    memset(jti, 'j', sizeof(jti) - 1);
    jti[JWT_CLAIM_MAX] = '\0';
    claims = format("{\"iss\":\"Vonage\",\"iat\":%d,\"jti\":\"%s\","
                    "\"payload_hash\":\"%s\"}",
                    NOW, jti, hash_abc);
    CHECK_RESULT(verify_claims(hs256_header, claims), JWT_OK);
    free(claims);

    jti[JWT_CLAIM_MAX] = 'j';
    jti[JWT_CLAIM_MAX + 1] = '\0';
    claims = format("{\"iss\":\"Vonage\",\"iat\":%d,\"jti\":\"%s\","
                    "\"payload_hash\":\"%s\"}",
                    NOW, jti, hash_abc);
    CHECK_RESULT(verify_claims(hs256_header, claims), JWT_ERR_JTI);
    free(claims);
}

static void
test_webhook_payload_hash(void)
{
    static const char *const bad[] = {
        NULL, /* absent */
        "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0",
        "ga7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *claims;

        if (bad[i] == NULL)
            claims = format("{\"iss\":\"Vonage\",\"iat\":%d,\"jti\":\"j\"}",
                            NOW);
        else
            claims = format("{\"iss\":\"Vonage\",\"iat\":%d,\"jti\":\"j\","
                            "\"payload_hash\":\"%s\"}",
                            NOW, bad[i]);
        CHECK_RESULT(verify_claims(hs256_header, claims),
                     JWT_ERR_PAYLOAD_HASH);
        free(claims);
    }
    {
        char *claims = format("{\"iss\":\"Vonage\",\"iat\":%d,\"jti\":\"j\","
                              "\"payload_hash\":64}",
                              NOW);

        CHECK_RESULT(verify_claims(hs256_header, claims),
                     JWT_ERR_PAYLOAD_HASH);
        free(claims);
    }
}

static void
test_webhook_api_key_selection(void)
{
    static const char s1[] = "secret-for-key-one";
    static const char s2[] = "secret-for-key-two";
    static const char sd[] = "default-secret";
    const struct jwt_secret with_default[] = {
        {"key1", (const unsigned char *)s1, sizeof(s1) - 1},
        {"key2", (const unsigned char *)s2, sizeof(s2) - 1},
        {NULL, (const unsigned char *)sd, sizeof(sd) - 1},
    };
    struct jwt_webhook_claims out;
    char *claims, *token;

#define VERIFY(tok, list, n)                                                  \
    jwt_verify_webhook((tok), strlen(tok), (list), (n), NOW, MAX_AGE, &out)

    claims = webhook_claims(NOW, ",\"api_key\":\"key2\"");
    token = make_hs256(hs256_header, claims, s2);
    CHECK_RESULT(VERIFY(token, with_default, 3), JWT_OK);
    CHECK(strcmp(out.api_key, "key2") == 0);
    free(token);

    token = make_hs256(hs256_header, claims, s1);
    CHECK_RESULT(VERIFY(token, with_default, 3), JWT_ERR_SIGNATURE);
    free(token);

    /* A matching key is not replaced by the default. */
    token = make_hs256(hs256_header, claims, sd);
    CHECK_RESULT(VERIFY(token, with_default, 3), JWT_ERR_SIGNATURE);
    free(token);
    free(claims);

    /* An api_key with no entry of its own falls back to the default. */
    claims = webhook_claims(NOW, ",\"api_key\":\"key9\"");
    token = make_hs256(hs256_header, claims, sd);
    CHECK_RESULT(VERIFY(token, with_default, 3), JWT_OK);
    CHECK(strcmp(out.api_key, "key9") == 0);
    CHECK_RESULT(VERIFY(token, with_default, 2), JWT_ERR_UNKNOWN_API_KEY);
    free(token);
    free(claims);

    /* No api_key claim: the default, or nothing. */
    claims = webhook_claims(NOW, "");
    token = make_hs256(hs256_header, claims, sd);
    CHECK_RESULT(VERIFY(token, with_default, 3), JWT_OK);
    CHECK_RESULT(VERIFY(token, with_default, 2), JWT_ERR_UNKNOWN_API_KEY);
    CHECK_RESULT(VERIFY(token, with_default, 0), JWT_ERR_UNKNOWN_API_KEY);
    free(token);
    free(claims);

    /* key1 before the default, without a default entry. */
    claims = webhook_claims(NOW, ",\"api_key\":\"key1\"");
    token = make_hs256(hs256_header, claims, s1);
    CHECK_RESULT(VERIFY(token, with_default, 2), JWT_OK);
    free(token);
    free(claims);
#undef VERIFY
}

/* ---- RS256 ------------------------------------------------------------ */

static void
test_rs256_sign_verify(EVP_PKEY *key, EVP_PKEY *other)
{
    char err[256] = "";
    EVP_PKEY *pub = public_only(key);
    char *t1 = jwt_sign_rs256(key, "app-0001", NOW, 900, err, sizeof(err));
    char *t2 = jwt_sign_rs256(key, "app-0001", NOW, 900, err, sizeof(err));
    json_t *claims = NULL, *c2 = NULL;
    char header[256], *first_dot, *tampered;
    unsigned char hbuf[256];
    size_t hlen = 0;

    CHECK(t1 != NULL);
    CHECK(t2 != NULL);
    if (t1 == NULL || t2 == NULL) {
        fprintf(stderr, "sign: %s\n", err);
        goto out;
    }

    first_dot = strchr(t1, '.');
    CHECK(jwt_base64url_decode(t1, (size_t)(first_dot - t1), hbuf, &hlen) ==
          0);
    memcpy(header, hbuf, hlen);
    header[hlen] = '\0';
    CHECK(strcmp(header, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}") == 0);

    CHECK_RESULT(jwt_verify_rs256(t1, strlen(t1), pub, &claims), JWT_OK);
    CHECK_RESULT(jwt_verify_rs256(t2, strlen(t2), pub, &c2), JWT_OK);
    if (claims != NULL && c2 != NULL) {
        const char *jti = json_string_value(json_object_get(claims, "jti"));

        CHECK(strcmp(json_string_value(
                         json_object_get(claims, "application_id")),
                     "app-0001") == 0);
        CHECK(json_integer_value(json_object_get(claims, "iat")) == NOW);
        CHECK(json_integer_value(json_object_get(claims, "exp")) ==
              NOW + 900);
        CHECK(jti != NULL);
        CHECK(jti != NULL && strlen(jti) == 36);
        CHECK(jti != NULL && jti[14] == '4');
        CHECK(strcmp(jti, json_string_value(json_object_get(c2, "jti"))) !=
              0);
        CHECK(json_object_size(claims) == 4);
    }
    json_decref(claims);
    json_decref(c2);

    CHECK_RESULT(jwt_verify_rs256(t1, strlen(t1), other, &claims),
                 JWT_ERR_SIGNATURE);
    CHECK(claims == NULL);

    /* "eyJh" -> "eyJi" turns the claims' {"a into {"b. */
    tampered = strdup(t1);
    tampered[first_dot - t1 + 4] ^= 1;
    CHECK_RESULT(jwt_verify_rs256(tampered, strlen(tampered), pub, &claims),
                 JWT_ERR_SIGNATURE);
    free(tampered);

    /* Signature cut from 342 to 340 characters, still valid base64url. */
    tampered = strndup(t1, strlen(t1) - 2);
    CHECK_RESULT(jwt_verify_rs256(tampered, strlen(tampered), pub, &claims),
                 JWT_ERR_SIGNATURE);
    free(tampered);

    /* An HS256 token made with the public key's PEM as the secret. */
    {
        char *pem = to_pem(key, PEM_PUBLIC);
        char *hs = make_hs256(hs256_header, "{\"application_id\":\"x\"}", pem);

        CHECK_RESULT(jwt_verify_rs256(hs, strlen(hs), pub, &claims),
                     JWT_ERR_ALG);
        free(hs);
        free(pem);
    }

out:
    free(t1);
    free(t2);
    EVP_PKEY_free(pub);
}

static void
test_rs256_sign_rejects(EVP_PKEY *key, EVP_PKEY *ec)
{
    char err[256];
    char *token;
    json_t *claims;

    err[0] = '\0';
    token = jwt_sign_rs256(key, "", NOW, 900, err, sizeof(err));
    CHECK(token == NULL);
    CHECK(strstr(err, "application id") != NULL);

    err[0] = '\0';
    token = jwt_sign_rs256(key, "app", NOW, 0, err, sizeof(err));
    CHECK(token == NULL);
    CHECK(strstr(err, "lifetime") != NULL);

    err[0] = '\0';
    token = jwt_sign_rs256(ec, "app", NOW, 900, err, sizeof(err));
    CHECK(token == NULL);
    CHECK(strstr(err, "EC key") != NULL);

    err[0] = '\0';
    token = jwt_sign_rs256_raw(key, "{\"alg\":\"HS256\"}", 15, "{}", 2, err,
                               sizeof(err));
    CHECK(token == NULL);
    CHECK(strstr(err, "RS256") != NULL);

    err[0] = '\0';
    token = jwt_sign_rs256_raw(key, "{\"alg\":\"RS256\"}", 15, "[1]", 3, err,
                               sizeof(err));
    CHECK(token == NULL);
    CHECK(strstr(err, "claims") != NULL);

    CHECK_RESULT(jwt_verify_rs256(rfc_a2_signing_input,
                                  strlen(rfc_a2_signing_input), ec, &claims),
                 JWT_ERR_KEY);
    CHECK_RESULT(jwt_verify_rs256(rfc_a2_signing_input,
                                  strlen(rfc_a2_signing_input), key, &claims),
                 JWT_ERR_FORMAT);
}

/* ---- private key loading -------------------------------------------- */

static EVP_PKEY *
load(const char *text, char *err, size_t errlen)
{
    err[0] = '\0';
    return jwt_load_private_key(text, strlen(text), err, errlen);
}

static void
expect_loads(const char *what, const char *text, EVP_PKEY *original)
{
    char err[256];
    EVP_PKEY *key = load(text, err, sizeof(err));

    if (key == NULL)
        fprintf(stderr, "%s: %s\n", what, err);
    CHECK(key != NULL);
    if (key != NULL)
        CHECK(KEYS_EQUAL(key, original));
    EVP_PKEY_free(key);
}

static void
expect_rejected(const char *what, const char *text, const char *reason,
                const char *pem)
{
    char err[256];
    EVP_PKEY *key = load(text, err, sizeof(err));

    CHECK(key == NULL);
    if (strstr(err, reason) == NULL)
        fprintf(stderr, "%s: message \"%s\" lacks \"%s\"\n", what, err,
                reason);
    CHECK(strstr(err, reason) != NULL);
    CHECK(!echoes_key(err, pem));
    EVP_PKEY_free(key);
}

static void
test_load_forms(EVP_PKEY *key)
{
    char *pkcs1 = to_pem(key, PEM_PKCS1);
    char *pkcs8 = to_pem(key, PEM_PKCS8);
    char *escaped = replace_all(pkcs1, "\n", "\\n");
    char *quoted = format("\"%s\"", escaped);
    char *crlf = replace_all(pkcs8, "\n", "\r\n");
    char *escaped_crlf = replace_all(pkcs8, "\n", "\\r\\n");
    char *spaces = replace_all(pkcs1, "\n", " ");
    char *padded = format("  \n\t%s\n\n  ", pkcs8);
    char *single_quoted = format("'%s'", pkcs1);
    char *lone_cr = replace_all(pkcs1, "\n", "\r");

    CHECK(strstr(pkcs1, "-----BEGIN RSA PRIVATE KEY-----") == pkcs1);
    CHECK(strstr(pkcs8, "-----BEGIN PRIVATE KEY-----") == pkcs8);
    expect_loads("PKCS#1", pkcs1, key);
    expect_loads("PKCS#8", pkcs8, key);
    expect_loads("escaped line breaks", escaped, key);
    expect_loads("quoted, escaped", quoted, key);
    expect_loads("CRLF", crlf, key);
    expect_loads("escaped CRLF", escaped_crlf, key);
    expect_loads("spaces for line breaks", spaces, key);
    expect_loads("surrounding white space", padded, key);
    expect_loads("single quotes", single_quoted, key);
    expect_loads("lone CR", lone_cr, key);

    free(pkcs1);
    free(pkcs8);
    free(escaped);
    free(quoted);
    free(crlf);
    free(escaped_crlf);
    free(spaces);
    free(padded);
    free(single_quoted);
    free(lone_cr);
}

static void
test_load_rejects(EVP_PKEY *key, EVP_PKEY *ec, EVP_PKEY *small)
{
    char *pkcs1 = to_pem(key, PEM_PKCS1);
    char *pkcs8 = to_pem(key, PEM_PKCS8);
    char *pub = to_pem(key, PEM_PUBLIC);
    char *encrypted = to_pem(key, PEM_ENCRYPTED);
    char *ec_pem = to_pem(ec, PEM_PKCS8);
    char *ec_trad = to_pem(ec, PEM_PKCS1);
    char *small_pem = to_pem(small, PEM_PKCS8);
    char *truncated = strdup(pkcs1);
    char *no_end = strdup(pkcs8);
    char *bad_char = strdup(pkcs8);
    char *flipped = strdup(pkcs8);
    char err[256];

    /* Keep the first 300 bytes of the body, then the END line. */
    strcpy(truncated + 300, "\n-----END RSA PRIVATE KEY-----\n");
    *strstr(no_end, "-----END") = '\0';
    bad_char[100] = '*';
    flipped[100] = flipped[100] == 'A' ? 'B' : 'A';

    expect_rejected("garbage", "hello world", "no PEM private key", pkcs1);
    expect_rejected("empty", "", "empty", pkcs1);
    expect_rejected("public key", pub, "not a private key", pub);
    expect_rejected("encrypted", encrypted, "encrypted", encrypted);
    expect_rejected("EC PKCS#8", ec_pem, "EC key", ec_pem);
    expect_rejected("EC traditional", ec_trad, "EC key", ec_trad);
    expect_rejected("1024 bits", small_pem, "1024 bits", small_pem);
    expect_rejected("truncated", truncated, "invalid private key", pkcs1);
    expect_rejected("no END line", no_end, "-----END PRIVATE KEY-----",
                    pkcs8);
    expect_rejected("non-base64 character", bad_char, "not base64", pkcs8);
    expect_rejected("unclosed BEGIN", "-----BEGIN RSA PRIVATE KEY\nMIIE",
                    "malformed PEM", pkcs1);
    expect_rejected("lowercase label", "-----BEGIN MIIEowIBAAKCAQEAofgWC-----",
                    "malformed PEM", pkcs1);

    /* A changed byte inside the modulus still parses as DER: only the
     * key's consistency check finds it. */
    CHECK(load(flipped, err, sizeof(err)) == NULL);
    CHECK(!echoes_key(err, pkcs8));

    free(pkcs1);
    free(pkcs8);
    free(pub);
    free(encrypted);
    free(ec_pem);
    free(ec_trad);
    free(small_pem);
    free(truncated);
    free(no_end);
    free(bad_char);
    free(flipped);
}

int
main(void)
{
    EVP_PKEY *key, *other, *ec, *small;

    test_base64url_vectors();
    test_base64url_rejects();
    test_base64url_round_trip();
    test_sha256_hex();
    test_random_uuid();
    test_strerror();
    test_rfc7515_a1();
    test_rfc7515_a2_key();
    test_rfc7515_a2();
    test_webhook_valid();
    test_webhook_iat_window();
    test_webhook_signature();
    test_webhook_algorithms();
    test_webhook_shape();
    test_webhook_size_limit();
    test_webhook_claims();
    test_webhook_jti_length();
    test_webhook_payload_hash();
    test_webhook_api_key_selection();

    key = generate_rsa(2048);
    other = generate_rsa(2048);
    ec = generate_ec();
    small = generate_rsa(1024);
    test_rs256_sign_verify(key, other);
    test_rs256_sign_rejects(key, ec);
    test_load_forms(key);
    test_load_rejects(key, ec, small);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(small);

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
