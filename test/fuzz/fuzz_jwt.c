/*
 * Fuzzes the signed-webhook token verifier and the base64url decoder.
 * The first byte picks the verifier's clock offset, so tokens with a
 * valid signature (the dictionary holds a real one) also reach the claim
 * checks; the rest is the token.
 */
#include <string.h>

#include "callhook/jwt.h"
#include "fuzz_target.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned char secret[] = "fuzz-secret";
    struct jwt_secret secrets[2] = {
        {NULL, secret, sizeof(secret) - 1},
        {"abcd1234", secret, 4},
    };
    struct jwt_webhook_claims claims;
    unsigned char decoded[9000];
    size_t decoded_len = 0;
    enum jwt_result result;
    const char *token;
    int64_t now;

    if (size < 1)
        return 0;
    now = 1796400000 + (int64_t)(data[0] % 8) * 200 - 800;
    token = (const char *)data + 1;
    size--;

    result = jwt_verify_webhook(token, size, secrets, 2, now, 300, &claims);
    FUZZ_ASSERT(jwt_strerror(result) != NULL);
    if (result == JWT_OK) {
        FUZZ_ASSERT(claims.jti[0] != '\0');
        FUZZ_ASSERT(strlen(claims.payload_hash) == 64);
        FUZZ_ASSERT(claims.iat >= now - 300 && claims.iat <= now + 300);
    }

    if (jwt_base64url_decoded_max(size) <= sizeof(decoded) &&
        jwt_base64url_decode(token, size, decoded, &decoded_len) == 0) {
        char again[12001];

        FUZZ_ASSERT(decoded_len <= jwt_base64url_decoded_max(size));
        /* Strict decoding means encoding gives the same text back. */
        FUZZ_ASSERT(jwt_base64url_encode(decoded, decoded_len, again) ==
                    size);
        FUZZ_ASSERT(memcmp(again, token, size) == 0);
    }
    return 0;
}
