/*
 * ai-sim: POST /infer and GET /slow, JSON answers held back by the latency
 * model.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"


int
sim_fail(sim_ctx_t *ctx)
{
    if (ctx->conf.fail_rate <= 0) {
        return 0;
    }

    return sim_rng_uniform(&ctx->rng) < ctx->conf.fail_rate;
}


void
sim_infer_handler(sim_ctx_t *ctx, struct evhttp_request *req)
{
    char              id[32], *output;
    cJSON            *root, *prompt, *reply, *usage;
    size_t            prompt_len, output_len;
    uint64_t          hash;
    unsigned          max_tokens, prompt_tokens;
    const char       *err, *model;
    sim_prefix_seq_t  seq;

    if (sim_http_check_body_size(ctx, req) != 0) {
        return;
    }

    root = sim_json_parse_body(req, &err);
    if (root == NULL) {
        sim_http_send_bad_request(ctx, req, err);
        return;
    }

    prompt = cJSON_GetObjectItemCaseSensitive(root, "prompt");

    if (!cJSON_IsString(prompt)) {
        cJSON_Delete(root);
        sim_http_send_bad_request(ctx, req,
                          "\"prompt\" is required and must be a string");
        return;
    }

    if (sim_json_get_max_tokens(root, &max_tokens, &err) != 0
        || sim_json_get_model(root, &model, &err) != 0)
    {
        cJSON_Delete(root);
        sim_http_send_bad_request(ctx, req, err);
        return;
    }

    if (sim_fail(ctx)) {
        cJSON_Delete(root);
        sim_http_send_injected(ctx, req);
        return;
    }

    prompt_len = strlen(prompt->valuestring);
    prompt_tokens = sim_model_count_tokens(prompt->valuestring, prompt_len);
    hash = sim_model_hash(model, prompt->valuestring, prompt_len,
                          max_tokens);

    /* the prefix cache reads the prompt as the model would */
    sim_prefix_seq_init(&seq, ctx->prefix.capacity > 0);

    output = sim_model_generate(hash, max_tokens, &output_len);
    reply = cJSON_CreateObject();
    usage = sim_json_usage(prompt_tokens, max_tokens);

    snprintf(id, sizeof(id), "infer-%016" PRIx64, hash);

    if (sim_prefix_seq_add(&seq, prompt->valuestring, prompt_len) != 0
        || output == NULL || reply == NULL || usage == NULL
        || cJSON_AddStringToObject(reply, "id", id) == NULL
        || cJSON_AddStringToObject(reply, "server_id", ctx->conf.id) == NULL
        || cJSON_AddStringToObject(reply, "model", model) == NULL
        || cJSON_AddStringToObject(reply, "output", output) == NULL
        || !cJSON_AddItemToObject(reply, "usage", usage))
    {
        sim_prefix_seq_free(&seq);
        free(output);
        cJSON_Delete(usage);
        cJSON_Delete(reply);
        cJSON_Delete(root);
        sim_http_send_oom(ctx, req);
        return;
    }

    free(output);
    cJSON_Delete(root);

    sim_sched_reply(ctx, req, reply, (long) prompt_tokens + max_tokens,
                    max_tokens, &seq);
}


void
sim_slow_handler(sim_ctx_t *ctx, struct evhttp_request *req)
{
    cJSON  *reply;

    if (sim_fail(ctx)) {
        sim_http_send_injected(ctx, req);
        return;
    }

    reply = cJSON_CreateObject();

    if (reply == NULL
        || cJSON_AddTrueToObject(reply, "ok") == NULL
        || cJSON_AddStringToObject(reply, "server_id", ctx->conf.id) == NULL
        || cJSON_AddStringToObject(reply, "path", "/slow") == NULL
        || cJSON_AddNumberToObject(reply, "delay_ms", SIM_SLOW_DELAY_MS)
           == NULL)
    {
        cJSON_Delete(reply);
        sim_http_send_oom(ctx, req);
        return;
    }

    sim_req_delay_reply(ctx, req, reply, -1, sim_reply_plain,
                        SIM_SLOW_DELAY_MS);
}
