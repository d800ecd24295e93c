/*
 * ai-sim: the HTTP server, the routing table, and the answers and errors
 * every route shares.
 */

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <event2/keyvalq_struct.h>

#include "sim.h"


typedef void (*sim_route_handler_pt)(sim_ctx_t *ctx,
    struct evhttp_request *req);


typedef struct {
    const char               *path;
    unsigned                  methods;           /* EVHTTP_REQ_* mask */
    const char               *allow;
    sim_route_handler_pt      handler;
    unsigned                  counted:1;         /* in "requests" */
} sim_route_t;


static void sim_http_handler(struct evhttp_request *req, void *arg);


#define SIM_GET_HEAD   (EVHTTP_REQ_GET | EVHTTP_REQ_HEAD)

static const sim_route_t  sim_routes[] = {
    { "/healthz", SIM_GET_HEAD, "GET, HEAD", sim_healthz_handler, 0 },
    { "/metrics", SIM_GET_HEAD, "GET, HEAD", sim_metrics_handler, 0 },
    { "/infer", EVHTTP_REQ_POST, "POST", sim_infer_handler, 1 },
    { "/slow", SIM_GET_HEAD, "GET, HEAD", sim_slow_handler, 1 },
    { "/v1/models", SIM_GET_HEAD, "GET, HEAD", sim_models_handler, 1 },
    { "/v1/chat/completions", EVHTTP_REQ_POST, "POST", sim_chat_handler,
      1 },
    { NULL, 0, NULL, NULL, 0 }
};


static const char *
sim_method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }

    return "UNKNOWN";
}


/* answers */


void
sim_http_add_common_headers(sim_ctx_t *ctx, struct evhttp_request *req,
    const char *content_type, long total_tokens)
{
    char                  buf[32];
    struct evkeyvalq     *headers;

    headers = evhttp_request_get_output_headers(req);

    /* evhttp would default to text/html */
    evhttp_remove_header(headers, "Content-Type");
    evhttp_add_header(headers, "Content-Type", content_type);
    evhttp_add_header(headers, "X-Server-Id", ctx->conf.id);

    if (total_tokens >= 0) {
        snprintf(buf, sizeof(buf), "%ld", total_tokens);
        evhttp_add_header(headers, "X-Usage-Total-Tokens", buf);
    }

    sim_metrics_add_load_header(ctx, headers);
}


void
sim_http_send_body(sim_ctx_t *ctx, struct evhttp_request *req, int status,
    const char *reason, const char *body, size_t len, long total_tokens)
{
    struct evbuffer  *out;

    sim_http_add_common_headers(ctx, req, "application/json", total_tokens);

    out = evbuffer_new();
    if (out == NULL) {
        evhttp_send_reply(req, 500, "Internal Server Error", NULL);
        return;
    }

    if (evbuffer_add(out, body, len) != 0
        || evbuffer_add(out, "\n", 1) != 0)
    {
        evbuffer_free(out);
        evhttp_send_reply(req, 500, "Internal Server Error", NULL);
        return;
    }

    evhttp_send_reply(req, status, reason, out);
    evbuffer_free(out);
}


void
sim_http_send_json(sim_ctx_t *ctx, struct evhttp_request *req, int status,
    const char *reason, cJSON *json, long total_tokens)
{
    char    *body;
    size_t   len;

    body = sim_json_print(json, &len);
    if (body == NULL) {
        sim_http_add_common_headers(ctx, req, "application/json", -1);
        evhttp_send_reply(req, 500, "Internal Server Error", NULL);
        return;
    }

    sim_http_send_body(ctx, req, status, reason, body, len, total_tokens);
    cJSON_free(body);
}


void
sim_http_send_error(sim_ctx_t *ctx, struct evhttp_request *req, int status,
    const char *reason, const char *type, const char *message)
{
    cJSON  *root, *err;

    root = cJSON_CreateObject();
    err = cJSON_AddObjectToObject(root, "error");

    if (root == NULL || err == NULL
        || cJSON_AddStringToObject(err, "message", message) == NULL
        || cJSON_AddStringToObject(err, "type", type) == NULL
        || cJSON_AddNullToObject(err, "param") == NULL
        || cJSON_AddNullToObject(err, "code") == NULL)
    {
        cJSON_Delete(root);
        sim_http_add_common_headers(ctx, req, "application/json", -1);
        evhttp_send_reply(req, 500, "Internal Server Error", NULL);
        return;
    }

    sim_http_send_json(ctx, req, status, reason, root, -1);
    cJSON_Delete(root);
}


void
sim_http_send_bad_request(sim_ctx_t *ctx, struct evhttp_request *req,
    const char *message)
{
    sim_http_send_error(ctx, req, 400, "Bad Request",
                        "invalid_request_error", message);
}


void
sim_http_send_oom(sim_ctx_t *ctx, struct evhttp_request *req)
{
    sim_http_send_error(ctx, req, 500, "Internal Server Error",
                        "server_error", "out of memory");
}


void
sim_http_send_injected(sim_ctx_t *ctx, struct evhttp_request *req)
{
    sim_http_send_error(ctx, req, 500, "Internal Server Error",
                        "server_error", "injected failure");
}


int
sim_http_check_body_size(sim_ctx_t *ctx, struct evhttp_request *req)
{
    char    msg[128];
    size_t  len;

    len = evbuffer_get_length(evhttp_request_get_input_buffer(req));

    if (len <= ctx->conf.max_body) {
        return 0;
    }

    snprintf(msg, sizeof(msg),
             "request body is larger than the limit of %zu bytes",
             ctx->conf.max_body);

    sim_http_send_error(ctx, req, 413, "Payload Too Large",
                        "invalid_request_error", msg);

    return -1;
}


void
sim_http_set_idle(sim_ctx_t *ctx, struct evhttp_connection *evcon)
{
    double          us;
    struct timeval  tv;

    us = floor(ctx->conf.idle_timeout * 1000000.0);
    tv.tv_sec = (time_t) (us / 1000000.0);
    tv.tv_usec = (suseconds_t) (us - (double) tv.tv_sec * 1000000.0);

    if (evcon == NULL) {
        evhttp_set_timeout_tv(ctx->http, &tv);

    } else {
        evhttp_connection_set_timeout_tv(evcon, &tv);
    }
}


/* routes */


static void
sim_http_handler(struct evhttp_request *req, void *arg)
{
    char                      msg[512];
    sim_ctx_t                *ctx;
    const char               *path;
    const sim_route_t        *route;
    enum evhttp_cmd_type      cmd;
    const struct evhttp_uri  *uri;

    ctx = arg;

    uri = evhttp_request_get_evhttp_uri(req);
    path = (uri != NULL) ? evhttp_uri_get_path(uri) : NULL;

    if (path == NULL || path[0] == '\0') {
        path = "/";
    }

    for (route = sim_routes; route->path != NULL; route++) {
        if (strcmp(route->path, path) == 0) {
            break;
        }
    }

    if (route->path == NULL || route->counted) {
        ctx->requests++;
    }

    if (route->path == NULL) {
        snprintf(msg, sizeof(msg), "unknown path \"%.256s\"", path);
        sim_http_send_error(ctx, req, 404, "Not Found",
                            "invalid_request_error", msg);
        return;
    }

    cmd = evhttp_request_get_command(req);

    if ((route->methods & cmd) == 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          route->allow);
        snprintf(msg, sizeof(msg), "method \"%s\" is not allowed on \"%s\"",
                 sim_method_name(cmd), route->path);
        sim_http_send_error(ctx, req, 405, "Method Not Allowed",
                            "invalid_request_error", msg);
        return;
    }

    route->handler(ctx, req);
}


int
sim_http_init(sim_ctx_t *ctx, int fd)
{
    size_t  limit;

    ctx->http = evhttp_new(ctx->base);
    if (ctx->http == NULL) {
        evutil_closesocket(fd);
        return -1;
    }

    /*
     * evhttp answers methods outside its allowed set with an HTML 501;
     * allow them all so that every method gets our JSON 405.
     */
    evhttp_set_allowed_methods(ctx->http,
                               EVHTTP_REQ_GET | EVHTTP_REQ_POST
                               | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT
                               | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS
                               | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT
                               | EVHTTP_REQ_PATCH);

    /*
     * evhttp's own 413 is HTML without X-Server-Id, so its limit sits well
     * above --max-body and the handlers answer 413 in JSON; only absurd
     * bodies hit evhttp's limit.
     */
    limit = ctx->conf.max_body * 2 + 1024 * 1024;

    evhttp_set_max_body_size(ctx->http, (ev_ssize_t) limit);
    evhttp_set_max_headers_size(ctx->http, SIM_MAX_HEADERS);
    /* idle keep-alive connections, slow request senders; see above */
    sim_http_set_idle(ctx, NULL);
    evhttp_set_default_content_type(ctx->http, "application/json");
    evhttp_set_gencb(ctx->http, sim_http_handler, ctx);

    return sim_accept_init(ctx, fd);
}
