/*
 * ai-sim: the routes that describe the replica: /healthz and /v1/models.
 */

#include "sim.h"


void
sim_healthz_handler(sim_ctx_t *ctx, struct evhttp_request *req)
{
    cJSON  *root;

    root = cJSON_CreateObject();

    if (root == NULL
        || cJSON_AddTrueToObject(root, "ok") == NULL
        || cJSON_AddStringToObject(root, "service", SIM_SERVICE) == NULL
        || cJSON_AddStringToObject(root, "id", ctx->conf.id) == NULL
        || cJSON_AddNumberToObject(root, "uptime_ms",
                                   (double) (sim_now_ms() - ctx->start_ms))
           == NULL
        || cJSON_AddNumberToObject(root, "inflight", ctx->inflight) == NULL
        || cJSON_AddNumberToObject(root, "requests",
                                   (double) ctx->requests) == NULL
        || cJSON_AddNumberToObject(root, "cut", (double) ctx->cut) == NULL
        || cJSON_AddNumberToObject(root, "running", ctx->slots.running)
           == NULL
        || cJSON_AddNumberToObject(root, "waiting", ctx->slots.waiting)
           == NULL
        || cJSON_AddNumberToObject(root, "batch_tokens",
                                   (double) ctx->batch.tokens) == NULL
        || cJSON_AddNumberToObject(root, "prefix_hit_tokens",
                                   (double) ctx->prefix.hit_tokens) == NULL
        || cJSON_AddNumberToObject(root, "prefix_query_tokens",
                                   (double) ctx->prefix.query_tokens)
           == NULL)
    {
        cJSON_Delete(root);
        sim_http_send_oom(ctx, req);
        return;
    }

    sim_http_send_json(ctx, req, 200, "OK", root, -1);
    cJSON_Delete(root);
}


void
sim_models_handler(sim_ctx_t *ctx, struct evhttp_request *req)
{
    cJSON  *root, *data, *model;

    root = cJSON_CreateObject();
    data = cJSON_CreateArray();
    model = cJSON_CreateObject();

    if (root == NULL || data == NULL || model == NULL) {
        cJSON_Delete(root);
        cJSON_Delete(data);
        cJSON_Delete(model);
        sim_http_send_oom(ctx, req);
        return;
    }

    cJSON_AddStringToObject(root, "object", "list");
    cJSON_AddItemToObject(root, "data", data);
    cJSON_AddItemToArray(data, model);
    cJSON_AddStringToObject(model, "id", SIM_MODEL_DEFAULT);
    cJSON_AddStringToObject(model, "object", "model");
    cJSON_AddNumberToObject(model, "created", SIM_MODEL_CREATED);
    cJSON_AddStringToObject(model, "owned_by", SIM_SERVICE);

    sim_http_send_json(ctx, req, 200, "OK", root, -1);
    cJSON_Delete(root);
}
