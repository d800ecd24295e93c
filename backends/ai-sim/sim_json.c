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


int
sim_json_get_max_tokens(cJSON *root, unsigned *max_tokens, const char **err)
{
    double  v;
    cJSON  *item;

    item = cJSON_GetObjectItemCaseSensitive(root, "max_tokens");

    /* absent or null: OpenAI clients send null for "use the default" */
    if (item == NULL || cJSON_IsNull(item)) {
        *max_tokens = SIM_MAX_TOKENS_DEF;
        return 0;
    }

    if (!cJSON_IsNumber(item)) {
        *err = "\"max_tokens\" must be an integer";
        return -1;
    }

    v = item->valuedouble;

    if (!isfinite(v) || floor(v) != v) {
        *err = "\"max_tokens\" must be an integer";
        return -1;
    }

    if (v < SIM_MAX_TOKENS_MIN || v > SIM_MAX_TOKENS_MAX) {
        *err = "\"max_tokens\" must be between 1 and 4096";
        return -1;
    }

    *max_tokens = (unsigned) v;

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
