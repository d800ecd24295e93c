/*
 * ai-sim: request body parsing and shared JSON helpers.
 *
 * Validation returns a static message for the 400 answer rather than
 * answering itself, so the handlers decide the status in one place.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"


cJSON *
sim_json_parse_body(struct evhttp_request *req, const char **err)
{
    cJSON            *root;
    size_t            len;
    unsigned char    *data;
    struct evbuffer  *body;

    body = evhttp_request_get_input_buffer(req);
    len = evbuffer_get_length(body);

    if (len == 0) {
        *err = "request body is empty, a JSON object is expected";
        return NULL;
    }

    /* cJSON wants one contiguous buffer; the body is already in memory */
    data = evbuffer_pullup(body, -1);
    if (data == NULL) {
        *err = "cannot read request body";
        return NULL;
    }

    root = cJSON_ParseWithLength((const char *) data, len);
    if (root == NULL) {
        *err = "request body is not valid JSON";
        return NULL;
    }

    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        *err = "request body must be a JSON object";
        return NULL;
    }

    return root;
}


static int
sim_json_get_cap(cJSON *root, const char *name, const char *not_int,
    const char *out_of_range, unsigned *cap, const char **err)
{
    double  v;
    cJSON  *item;

    item = cJSON_GetObjectItemCaseSensitive(root, name);

    /* absent or null: OpenAI clients send null for "use the default" */
    if (item == NULL || cJSON_IsNull(item)) {
        return 0;
    }

    if (!cJSON_IsNumber(item)
        || !isfinite(item->valuedouble)
        || floor(item->valuedouble) != item->valuedouble)
    {
        *err = not_int;
        return -1;
    }

    v = item->valuedouble;

    if (v < SIM_MAX_TOKENS_MIN || v > SIM_MAX_TOKENS_MAX) {
        *err = out_of_range;
        return -1;
    }

    if ((unsigned) v < *cap) {
        *cap = (unsigned) v;
    }

    return 0;
}


/*
 * The completion length: OpenAI's "max_completion_tokens" (the newer
 * name) and "max_tokens" are both caps, so with both the smaller wins.
 * The simulator always generates up to the cap (finish_reason "length").
 */
int
sim_json_get_max_tokens(cJSON *root, unsigned *max_tokens, const char **err)
{
    unsigned  cap;

    cap = SIM_MAX_TOKENS_MAX + 1;

    if (sim_json_get_cap(root, "max_tokens",
                         "\"max_tokens\" must be an integer",
                         "\"max_tokens\" must be between 1 and 4096",
                         &cap, err) != 0
        || sim_json_get_cap(root, "max_completion_tokens",
                            "\"max_completion_tokens\" must be an integer",
                            "\"max_completion_tokens\" must be between 1 "
                            "and 4096",
                            &cap, err) != 0)
    {
        return -1;
    }

    *max_tokens = (cap > SIM_MAX_TOKENS_MAX) ? SIM_MAX_TOKENS_DEF : cap;

    return 0;
}


/* "stream_options": {"include_usage": true} */
int
sim_json_get_include_usage(cJSON *root, int *include_usage,
    const char **err)
{
    cJSON  *opts, *item;

    *include_usage = 0;

    opts = cJSON_GetObjectItemCaseSensitive(root, "stream_options");

    if (opts == NULL || cJSON_IsNull(opts)) {
        return 0;
    }

    if (!cJSON_IsObject(opts)) {
        *err = "\"stream_options\" must be an object";
        return -1;
    }

    item = cJSON_GetObjectItemCaseSensitive(opts, "include_usage");

    if (item == NULL || cJSON_IsNull(item)) {
        return 0;
    }

    if (!cJSON_IsBool(item)) {
        *err = "\"stream_options.include_usage\" must be a boolean";
        return -1;
    }

    *include_usage = cJSON_IsTrue(item);

    return 0;
}


int
sim_json_get_model(cJSON *root, const char **model, const char **err)
{
    cJSON  *item;

    item = cJSON_GetObjectItemCaseSensitive(root, "model");

    if (item == NULL || cJSON_IsNull(item)) {
        *model = SIM_MODEL_DEFAULT;
        return 0;
    }

    if (!cJSON_IsString(item) || item->valuestring[0] == '\0') {
        *err = "\"model\" must be a non-empty string";
        return -1;
    }

    if (strlen(item->valuestring) > 256) {
        *err = "\"model\" is longer than 256 characters";
        return -1;
    }

    *model = item->valuestring;

    return 0;
}


char *
sim_json_print(cJSON *json, size_t *len)
{
    char  *out;

    out = cJSON_PrintUnformatted(json);
    if (out != NULL) {
        *len = strlen(out);
    }

    return out;
}


cJSON *
sim_json_usage(unsigned prompt_tokens, unsigned completion_tokens)
{
    cJSON  *usage;

    usage = cJSON_CreateObject();
    if (usage == NULL) {
        return NULL;
    }

    cJSON_AddNumberToObject(usage, "prompt_tokens", prompt_tokens);
    cJSON_AddNumberToObject(usage, "completion_tokens", completion_tokens);
    cJSON_AddNumberToObject(usage, "total_tokens",
                            prompt_tokens + completion_tokens);

    return usage;
}


/*
 * With a prefix cache (--prefix-cache-tokens), a usage says how much of
 * the prompt it held, as vLLM and OpenAI do:
 * "prompt_tokens_details": {"cached_tokens": N}.  The cache counts the
 * prompt in 4-byte pieces and usage.prompt_tokens in words (README), so N
 * is the prompt's share that hit, in the usage's units:
 * prompt_tokens x hit / looked up, rounded down.  Without a cache, the
 * usage is left as it was.  -1 on allocation failure.
 */
unsigned
sim_json_cached_tokens(unsigned prompt_tokens, uint64_t hit, uint64_t seq)
{
    if (seq == 0 || hit >= seq) {
        return (seq == 0) ? 0 : prompt_tokens;
    }

    return (unsigned) ((uint64_t) prompt_tokens * hit / seq);
}


int
sim_json_usage_cached(sim_ctx_t *ctx, cJSON *reply, uint64_t hit,
    uint64_t seq)
{
    cJSON  *usage, *details, *prompt;

    if (ctx->prefix.capacity == 0 || reply == NULL) {
        return 0;
    }

    usage = cJSON_GetObjectItemCaseSensitive(reply, "usage");
    prompt = usage ? cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens")
                   : NULL;

    if (!cJSON_IsNumber(prompt)) {
        return 0;
    }

    details = cJSON_AddObjectToObject(usage, "prompt_tokens_details");

    if (details == NULL
        || cJSON_AddNumberToObject(details, "cached_tokens",
                   sim_json_cached_tokens((unsigned) prompt->valuedouble,
                                          hit, seq))
           == NULL)
    {
        return -1;
    }

    return 0;
}
