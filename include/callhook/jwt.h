/*
 * JSON Web Tokens as the Vonage Voice API uses them (RFC 7515, RFC 7519):
 *   - HS256 tokens that Vonage puts in the Authorization header of signed
 *     webhooks, verified with the account's signature secret;
 *   - RS256 tokens that authenticate requests to the Voice API, signed
 *     with the application's private key.
 *
 * Nothing here does I/O: keys and secrets come in as memory, so fuzz
 * harnesses can call these functions directly. Error messages never
 * contain a token, a secret or key material.
 */
#ifndef CALLHOOK_JWT_H
#define CALLHOOK_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>

/* Maximum token length accepted, in bytes. */
#define JWT_TOKEN_MAX 8192

/* Maximum length of the jti, api_key and application_id claims, in bytes. */
#define JWT_CLAIM_MAX 128

/* Bytes for a UUID in text form, with its NUL. */
#define JWT_UUID_SIZE 37

/* Bytes for a SHA-256 digest in hex, with its NUL. */
#define JWT_SHA256_HEX_SIZE 65

/* ---- base64url (RFC 4648 section 5, without padding) ---------------- */

/* Bytes jwt_base64url_encode() writes for len input bytes, with the NUL. */
#define JWT_BASE64URL_ENCODED_SIZE(len)                                       \
    ((len) / 3 * 4 + ((len) % 3 ? (len) % 3 + 1 : 0) + 1)

/*
 * Encodes len bytes into out, which needs JWT_BASE64URL_ENCODED_SIZE(len)
 * bytes, and NUL-terminates it. Returns the length without the NUL.
 */
size_t jwt_base64url_encode(const void *data, size_t len, char *out);

/* Size of the output buffer jwt_base64url_decode() needs for len chars. */
size_t jwt_base64url_decoded_max(size_t len);

/*
 * Decodes unpadded base64url text. Rejects '=' padding, characters outside
 * the URL-safe alphabet, lengths that no encoding produces (len % 4 == 1)
 * and a last character whose unused low bits are not zero, so that every
 * byte string has exactly one accepted encoding. out needs
 * jwt_base64url_decoded_max(len) bytes. Returns 0 and stores the decoded
 * length in *out_len, or -1.
 */
int jwt_base64url_decode(const char *text, size_t len, unsigned char *out,
                         size_t *out_len);

/*
 * Writes the lowercase hex SHA-256 digest of data into out. Returns 0, or
 * -1 when OpenSSL fails (out is then an empty string).
 */
int sha256_hex(const void *data, size_t len, char out[JWT_SHA256_HEX_SIZE]);

/*
 * Writes a random version 4 UUID (RFC 4122) from RAND_bytes(), lowercase.
 * Returns 0, or -1 when the random generator fails.
 */
int jwt_random_uuid(char out[JWT_UUID_SIZE]);

/* ---- verification results ------------------------------------------- */

enum jwt_result {
    JWT_OK = 0,
    JWT_ERR_TOO_LARGE,       /* longer than JWT_TOKEN_MAX */
    JWT_ERR_FORMAT,          /* not three non-empty parts with two dots */
    JWT_ERR_BASE64,          /* a part is not strict unpadded base64url */
    JWT_ERR_HEADER,          /* header not a JSON object, or has "crit" */
    JWT_ERR_ALG,             /* "alg" missing or not the expected one */
    JWT_ERR_TYP,             /* "typ" present but not "JWT" */
    JWT_ERR_CLAIMS,          /* claims not a JSON object */
    JWT_ERR_API_KEY,         /* "api_key" not a string of 1-128 bytes */
    JWT_ERR_UNKNOWN_API_KEY, /* no secret for "api_key" and no default */
    JWT_ERR_EMPTY_SECRET,    /* the chosen secret has no bytes */
    JWT_ERR_KEY,             /* the key is not an RSA key */
    JWT_ERR_SIGNATURE,       /* signature does not match */
    JWT_ERR_ISS,             /* "iss" missing or not "Vonage" */
    JWT_ERR_IAT,             /* "iat" missing or not an integer */
    JWT_ERR_EXPIRED,         /* "iat" older than the maximum age */
    JWT_ERR_FUTURE,          /* "iat" later than now + the maximum age */
    JWT_ERR_JTI,             /* "jti" not a string of 1-128 bytes */
    JWT_ERR_PAYLOAD_HASH,    /* "payload_hash" not 64 lowercase hex */
    JWT_ERR_APPLICATION_ID,  /* "application_id" not a string of 1-128 */
    JWT_ERR_NOMEM,
    JWT_ERR_CRYPTO,          /* OpenSSL failed for another reason */
};

/* A fixed message for result; it never names the token or a secret. */
const char *jwt_strerror(enum jwt_result result);

/* ---- HS256: Vonage signed webhooks ---------------------------------- */

/*
 * One signature secret. api_key selects it by the token's "api_key" claim;
 * NULL marks the default, used when the claim is absent or matches no
 * other entry. The secret is raw bytes, as shown in the Vonage dashboard.
 */
struct jwt_secret {
    const char *api_key;
    const unsigned char *secret;
    size_t secret_len;
};

/* Claims of a verified webhook token. Absent optional claims are "". */
struct jwt_webhook_claims {
    int64_t iat;
    char jti[JWT_CLAIM_MAX + 1];
    char payload_hash[JWT_SHA256_HEX_SIZE];
    char api_key[JWT_CLAIM_MAX + 1];
    char application_id[JWT_CLAIM_MAX + 1];
};

/*
 * Verifies the token of a Vonage signed webhook, in this order: size and
 * shape; the header, whose "alg" must be exactly "HS256" (so "none",
 * RS256 and HS512 tokens are rejected before any secret is touched) and
 * whose "typ", when present, must be "JWT"; the claims object and its
 * "api_key", which chooses the secret; the HMAC-SHA256 signature,
 * compared in constant time; then "iss" == "Vonage", "iat" within
 * max_age seconds of now in either direction, "jti", "payload_hash" and
 * "application_id".
 *
 * The caller still has to compare out->payload_hash with sha256_hex() of
 * the request body, and may track out->jti against replays. out is
 * filled only on JWT_OK. token need not be NUL-terminated.
 */
enum jwt_result jwt_verify_webhook(const char *token, size_t len,
                                   const struct jwt_secret *secrets,
                                   size_t nsecrets, int64_t now,
                                   int64_t max_age,
                                   struct jwt_webhook_claims *out);

/*
 * The signature layer of jwt_verify_webhook() alone: shape, header and
 * HMAC-SHA256 with one secret. The claims part is not decoded. Exported
 * for the RFC 7515 test vectors, whose claims are not Vonage's.
 */
enum jwt_result jwt_hs256_check_signature(const char *token, size_t len,
                                          const unsigned char *secret,
                                          size_t secret_len);

/* ---- RS256: Voice API requests -------------------------------------- */

/*
 * Loads an RSA private key of at least 2048 bits from PEM text, PKCS#1
 * ("BEGIN RSA PRIVATE KEY") or PKCS#8 ("BEGIN PRIVATE KEY"). The text
 * is first cleaned of what configuration stores do to multi-line values:
 * surrounding white space and quotes are trimmed, the two characters
 * '\' 'n' become a line break, '\' 'r' and CR bytes are dropped.
 * Encrypted keys are rejected without prompting for a passphrase.
 * Returns a key the caller frees with EVP_PKEY_free(), or NULL with a
 * message in err that never quotes the key.
 */
EVP_PKEY *jwt_load_private_key(const char *pem, size_t len, char *err,
                               size_t errlen);

/*
 * Signs a Voice API token: header {"alg":"RS256","typ":"JWT"}, claims
 * application_id, iat, a fresh random jti and exp = iat + ttl_seconds.
 * Returns a NUL-terminated token the caller frees with free(), or NULL
 * with a message in err.
 */
char *jwt_sign_rs256(EVP_PKEY *key, const char *application_id, int64_t iat,
                     int64_t ttl_seconds, char *err, size_t errlen);

/*
 * Signs header and claims exactly as given, byte for byte, so published
 * test vectors can be reproduced. Both must be JSON objects and the
 * header's "alg" must be "RS256". Same return contract as
 * jwt_sign_rs256().
 */
char *jwt_sign_rs256_raw(EVP_PKEY *key, const char *header, size_t header_len,
                         const char *claims, size_t claims_len, char *err,
                         size_t errlen);

/*
 * Verifies an RS256 token with an RSA public (or private) key: shape,
 * header ("alg" exactly "RS256", "typ" "JWT" when present) and signature.
 * It checks no claim: on JWT_OK, *claims is the decoded claims object,
 * which the caller releases with json_decref(). Otherwise *claims is
 * NULL.
 */
enum jwt_result jwt_verify_rs256(const char *token, size_t len, EVP_PKEY *key,
                                 json_t **claims);

#endif
