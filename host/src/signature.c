/*
 * signature.c - Standard Webhooks signatures (see signature.h).
 */
#include "signature.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <evhost/evhost.h>

struct signer {
    EVP_MAC_CTX *ctx; /* initialised with the key: its pads are hashed */
    unsigned char *key;
    size_t key_len;
};

/* The algorithm, fetched once for the process (a fetch is a lookup in
 * OpenSSL's provider tables, under a lock). */
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static EVP_MAC *hmac;

static void fetch_hmac(void)
{
    hmac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
}

signer *signer_new(const unsigned char *key, size_t key_len)
{
    pthread_once(&fetch_once, fetch_hmac);
    if (!hmac)
        return NULL;
    signer *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    /* an empty key is still a key: HMAC pads it with zeros */
    s->key = malloc(key_len ? key_len : 1);
    s->ctx = EVP_MAC_CTX_new(hmac);
    if (!s->key || !s->ctx) {
        signer_free(s);
        return NULL;
    }
    if (key_len)
        memcpy(s->key, key, key_len);
    s->key_len = key_len;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    unsigned char empty = 0;
    if (!EVP_MAC_init(s->ctx, key_len ? key : &empty, key_len, params)) {
        signer_free(s);
        return NULL;
    }
    return s;
}

int signer_is_for(const signer *s, const unsigned char *key, size_t key_len)
{
    return s && s->key_len == key_len && (!key_len || !memcmp(s->key, key, key_len));
}

int signer_sign(signer *s, const char *msg_id, long long timestamp, const char *body,
                size_t body_len, char **out)
{
    *out = NULL;
    char ts[32];
    int ts_len = snprintf(ts, sizeof ts, "%lld", timestamp);
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    /* a NULL key starts again from the pads hashed at signer_new */
    if (!EVP_MAC_init(s->ctx, NULL, 0, NULL) ||
        !EVP_MAC_update(s->ctx, (const unsigned char *)msg_id, strlen(msg_id)) ||
        !EVP_MAC_update(s->ctx, (const unsigned char *)".", 1) ||
        !EVP_MAC_update(s->ctx, (const unsigned char *)ts, (size_t)ts_len) ||
        !EVP_MAC_update(s->ctx, (const unsigned char *)".", 1) ||
        !EVP_MAC_update(s->ctx, (const unsigned char *)body, body_len) ||
        !EVP_MAC_final(s->ctx, mac, &mac_len, sizeof mac))
        return EVH_E_NOMEM;
    char *sig = malloc(3 + 4 * ((mac_len + 2) / 3) + 1);
    if (!sig)
        return EVH_E_NOMEM;
    memcpy(sig, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)sig + 3, mac, (int)mac_len);
    *out = sig;
    return EVH_OK;
}

void signer_free(signer *s)
{
    if (!s)
        return;
    EVP_MAC_CTX_free(s->ctx);
    if (s->key) /* the key is a secret: wipe the copy before it goes */
        OPENSSL_cleanse(s->key, s->key_len);
    free(s->key);
    free(s);
}
