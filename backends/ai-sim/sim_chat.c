/*
 * ai-sim: POST /v1/chat/completions, as a JSON answer or a stream.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"


/*
 * Joins the message contents with "\n" into a malloc()ed prompt, or
 * returns NULL with *err set when "messages" is not what OpenAI accepts.
 */
static char *
sim_chat_prompt(cJSON *root, size_t *len, const char **err)
{
    char    *prompt, *p;
    cJSON   *messages, *msg, *role, *content;
    size_t   size, n;

    messages = cJSON_GetObjectItemCaseSensitive(root, "messages");

    if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0) {
        *err = "\"messages\" is required and must be a non-empty array";
        return NULL;
    }

    size = 1;

    cJSON_ArrayForEach(msg, messages) {
        role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        content = cJSON_GetObjectItemCaseSensitive(msg, "content");

        if (!cJSON_IsObject(msg) || !cJSON_IsString(role)
            || !cJSON_IsString(content))
        {
            *err = "each message must be an object with string \"role\" "
                   "and \"content\"";
            return NULL;
        }

        size += strlen(content->valuestring) + 1;
    }

    prompt = malloc(size);
    if (prompt == NULL) {
        *err = NULL;
        return NULL;
    }

    p = prompt;

    cJSON_ArrayForEach(msg, messages) {
        content = cJSON_GetObjectItemCaseSensitive(msg, "content");

        if (p != prompt) {
            *p++ = '\n';
        }

        n = strlen(content->valuestring);
        memcpy(p, content->valuestring, n);
        p += n;
    }

    *p = '\0';
    *len = p - prompt;

    return prompt;
}


/*
 * The prompt in the order the model reads it, for the prefix cache: each
 * message's role and content, each followed by a newline, as a chat
 * template lays them out; "messages" is valid by now.
 */
static int
sim_chat_seq(cJSON *root, sim_prefix_seq_t *seq)
{
    cJSON       *messages, *msg;
    const char  *s;

    messages = cJSON_GetObjectItemCaseSensitive(root, "messages");

    cJSON_ArrayForEach(msg, messages) {
        s = cJSON_GetObjectItemCaseSensitive(msg, "role")->valuestring;

        if (sim_prefix_seq_add(seq, s, strlen(s)) != 0
            || sim_prefix_seq_add(seq, "\n", 1) != 0)
        {
            return -1;
        }

        s = cJSON_GetObjectItemCaseSensitive(msg, "content")->valuestring;

        if (sim_prefix_seq_add(seq, s, strlen(s)) != 0
            || sim_prefix_seq_add(seq, "\n", 1) != 0)
        {
            return -1;
        }
    }

    return 0;
}


static cJSON *
sim_chat_reply(sim_ctx_t *ctx, const char *model, uint64_t hash,
    unsigned prompt_tokens, unsigned max_tokens)
{
    int     ok;
    char    id[32], *output;
    cJSON  *reply, *choices, *choice, *message, *usage;
    size_t  output_len;

    output = sim_model_generate(hash, max_tokens, &output_len);
    if (output == NULL) {
        return NULL;
    }

    snprintf(id, sizeof(id), "chatcmpl-%016" PRIx64, hash);

    /*
     * cJSON's Add functions return NULL for a NULL parent, so building in
     * OpenAI's key order and checking once at the end is enough.
     */
    reply = cJSON_CreateObject();

    ok = cJSON_AddStringToObject(reply, "id", id) != NULL;
    ok &= cJSON_AddStringToObject(reply, "object", "chat.completion") != NULL;
    ok &= cJSON_AddNumberToObject(reply, "created", (double) time(NULL))
          != NULL;
    ok &= cJSON_AddStringToObject(reply, "model", model) != NULL;
    ok &= cJSON_AddStringToObject(reply, "server_id", ctx->conf.id) != NULL;

    choices = cJSON_AddArrayToObject(reply, "choices");
    choice = cJSON_CreateObject();

    if (choice != NULL && !cJSON_AddItemToArray(choices, choice)) {
        cJSON_Delete(choice);
        choice = NULL;
    }

    ok &= cJSON_AddNumberToObject(choice, "index", 0) != NULL;
    message = cJSON_AddObjectToObject(choice, "message");
    ok &= cJSON_AddStringToObject(message, "role", "assistant") != NULL;
    ok &= cJSON_AddStringToObject(message, "content", output) != NULL;
    ok &= cJSON_AddStringToObject(choice, "finish_reason", "length")
          != NULL;
    usage = sim_json_usage(prompt_tokens, max_tokens);

    if (!cJSON_AddItemToObject(reply, "usage", usage)) {
        cJSON_Delete(usage);
        ok = 0;
    }

    free(output);

    if (!ok) {
        cJSON_Delete(reply);
        return NULL;
    }

    return reply;
}


/*
 * Where to cut a stream: the number of content events sent before the
 * connection closes, or -1 to let it end.  "X-Sim-Cut: N" decides for
 * tests that need a known cut (-2: not a number), else --cut-rate draws.
 */
static long
sim_chat_cut_header(struct evhttp_request *req)
{
    long         n;
    const char  *v, *p;

    v = evhttp_find_header(evhttp_request_get_input_headers(req),
                           "X-Sim-Cut");
    if (v == NULL) {
        return -1;
    }

    n = 0;

    for (p = v; *p >= '0' && *p <= '9' && n <= SIM_MAX_TOKENS_MAX; p++) {
        n = n * 10 + (*p - '0');
    }

    if (p == v || *p != '\0' || n > SIM_MAX_TOKENS_MAX) {
        return -2;
    }

    return n;
}


static long
sim_chat_cut_draw(sim_ctx_t *ctx, unsigned max_tokens)
{
    if (ctx->conf.cut_rate <= 0
        || !(sim_rng_uniform(&ctx->cut_rng) < ctx->conf.cut_rate))
    {
        return -1;
    }

    /* mid-way: after 1..max_tokens content events, before the last chunk */
    return 1 + (long) (sim_rng_next(&ctx->cut_rng) % max_tokens);
}


void
sim_chat_handler(sim_ctx_t *ctx, struct evhttp_request *req)
{
    int                 stream, include_usage;
    char               *prompt;
    cJSON              *root, *item, *reply;
    size_t              prompt_len;
    uint64_t            hash;
    unsigned            max_tokens, prompt_tokens;
    const char         *err, *model;
    sim_prefix_seq_t    seq;
    sim_stream_conf_t   sc;

    if (sim_http_check_body_size(ctx, req) != 0) {
        return;
    }

    root = sim_json_parse_body(req, &err);
    if (root == NULL) {
        sim_http_send_bad_request(ctx, req, err);
        return;
    }

    if (sim_json_get_max_tokens(root, &max_tokens, &err) != 0
        || sim_json_get_model(root, &model, &err) != 0)
    {
        cJSON_Delete(root);
        sim_http_send_bad_request(ctx, req, err);
        return;
    }

    item = cJSON_GetObjectItemCaseSensitive(root, "stream");

    if (item != NULL && !cJSON_IsNull(item) && !cJSON_IsBool(item)) {
        cJSON_Delete(root);
        sim_http_send_bad_request(ctx, req, "\"stream\" must be a boolean");
        return;
    }

    stream = cJSON_IsTrue(item);

    /* read but unused without "stream": true, where OpenAI says 400 */
    if (sim_json_get_include_usage(root, &include_usage, &err) != 0) {
        cJSON_Delete(root);
        sim_http_send_bad_request(ctx, req, err);
        return;
    }

    sc.cut_after = stream ? sim_chat_cut_header(req) : -1;

    if (sc.cut_after == -2) {
        cJSON_Delete(root);
        sim_http_send_bad_request(ctx, req, "\"X-Sim-Cut\" must be a "
                                  "number of events, 0..4096");
        return;
    }

    prompt = sim_chat_prompt(root, &prompt_len, &err);
    if (prompt == NULL) {
        cJSON_Delete(root);

        if (err == NULL) {
            sim_http_send_oom(ctx, req);

        } else {
            sim_http_send_bad_request(ctx, req, err);
        }

        return;
    }

    if (sim_fail(ctx)) {
        free(prompt);
        cJSON_Delete(root);
        sim_http_send_injected(ctx, req);
        return;
    }

    prompt_tokens = sim_model_count_tokens(prompt, prompt_len);
    hash = sim_model_hash(model, prompt, prompt_len, max_tokens);
    free(prompt);

    sim_prefix_seq_init(&seq, ctx->prefix.capacity > 0);

    if (sim_chat_seq(root, &seq) != 0) {
        sim_prefix_seq_free(&seq);
        cJSON_Delete(root);
        sim_http_send_oom(ctx, req);
        return;
    }

    if (stream) {
        if (sc.cut_after == -1) {
            sc.cut_after = sim_chat_cut_draw(ctx, max_tokens);
        }

        sc.model = model;
        sc.hash = hash;
        sc.prompt_tokens = prompt_tokens;
        sc.max_tokens = max_tokens;
        sc.include_usage = include_usage;
        sc.seq = &seq;

        if (sim_stream_start(ctx, req, &sc) != 0) {
            sim_http_send_oom(ctx, req);
        }

        cJSON_Delete(root);
        return;
    }

    reply = sim_chat_reply(ctx, model, hash, prompt_tokens, max_tokens);
    cJSON_Delete(root);

    if (reply == NULL) {
        sim_prefix_seq_free(&seq);
        sim_http_send_oom(ctx, req);
        return;
    }

    sim_sched_reply(ctx, req, reply, (long) prompt_tokens + max_tokens,
                    max_tokens, &seq);
}
