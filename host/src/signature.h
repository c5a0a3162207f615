/*
 * signature.h - Standard Webhooks signatures, with the key made ready once.
 *
 * The signature of one attempt is "v1," followed by the base64 HMAC-SHA256,
 * keyed with the subscription's key, of "<msg_id>.<timestamp>.<body>".  A
 * signer hashes the key's pads once (EVP_MAC_init with the key), and each
 * signature after that starts again from them: signing every delivery with
 * a fresh HMAC context (fetching the algorithm, hashing the pads) cost
 * ~7 % of the delivery thread's time (perf, bench_webhooks phase 1).
 *
 * A signer is used by one thread at a time.
 */
#ifndef EVH_SIGNATURE_H
#define EVH_SIGNATURE_H

#include <stddef.h>

typedef struct signer signer;

/* A signer for key (copied); NULL on out-of-memory or when OpenSSL has no
 * HMAC-SHA256. */
signer *signer_new(const unsigned char *key, size_t key_len);

/* 1 when s was made for this key (the same bytes). */
int signer_is_for(const signer *s, const unsigned char *key, size_t key_len);

/* The signature of one attempt into out (malloc'd): EVH_OK or EVH_E_NOMEM. */
int signer_sign(signer *s, const char *msg_id, long long timestamp, const char *body,
                size_t body_len, char **out);

void signer_free(signer *s);

#endif
