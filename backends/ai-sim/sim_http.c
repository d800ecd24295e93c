/*
 * ai-sim: routing, answers, errors and the lifetime of delayed requests.
 */

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
static void sim_healthz_handler(sim_ctx_t *ctx, struct evhttp_request *req);
static void sim_models_handler(sim_ctx_t *ctx, struct evhttp_request *req);
static void sim_infer_handler(sim_ctx_t *ctx, struct evhttp_request *req);
static void sim_slow_handler(sim_ctx_t *ctx, struct evhttp_request *req);
static void sim_chat_handler(sim_ctx_t *ctx, struct evhttp_request *req);
static void sim_req_timer_handler(evutil_socket_t fd, short what, void *arg);
static void sim_req_close_handler(struct evhttp_connection *evcon,
    void *arg);
static void sim_reply_with_latency(sim_req_t *r);
static void sim_reply_plain(sim_req_t *r);


#define SIM_GET_HEAD   (EVHTTP_REQ_GET | EVHTTP_REQ_HEAD)

static const sim_route_t  sim_routes[] = {
    { "/healthz", SIM_GET_HEAD, "GET, HEAD", sim_healthz_handler, 0 },
    { "/infer", EVHTTP_REQ_POST, "POST", sim_infer_handler, 1 },
    { "/slow", SIM_GET_HEAD, "GET, HEAD", sim_slow_handler, 1 },
    { "/v1/models", SIM_GET_HEAD, "GET, HEAD", sim_models_handler, 1 },
    { "/v1/chat/completions", EVHTTP_REQ_POST, "POST", sim_chat_handler,
      1 },
    { NULL, 0, NULL, NULL, 0 }
};


uint64_t
sim_now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


double
sim_jitter(sim_ctx_t *ctx)
{
    double  j;

    j = ctx->conf.jitter;

    if (j == 0) {
        return 1.0;
    }

    /* uniform in [1 - jitter, 1 + jitter] */
    return 1.0 - j + 2.0 * j * sim_rng_uniform(&ctx->rng);
}


static int
sim_fail(sim_ctx_t *ctx)
{
    if (ctx->conf.fail_rate <= 0) {
        return 0;
    }

    return sim_rng_uniform(&ctx->rng) < ctx->conf.fail_rate;
}


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
}


static void
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


static void
sim_http_send_bad_request(sim_ctx_t *ctx, struct evhttp_request *req,
    const char *message)
{
    sim_http_send_error(ctx, req, 400, "Bad Request",
                        "invalid_request_error", message);
}


static void
sim_http_send_oom(sim_ctx_t *ctx, struct evhttp_request *req)
{
    sim_http_send_error(ctx, req, 500, "Internal Server Error",
                        "server_error", "out of memory");
}


static void
sim_http_send_injected(sim_ctx_t *ctx, struct evhttp_request *req)
{
    sim_http_send_error(ctx, req, 500, "Internal Server Error",
                        "server_error", "injected failure");
}


static int
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


/* delayed requests */


sim_req_t *
sim_req_create(sim_ctx_t *ctx, struct evhttp_request *req,
    sim_req_handler_pt handler)
{
    sim_req_t  *r;

    r = calloc(1, sizeof(sim_req_t));
    if (r == NULL) {
        return NULL;
    }

    r->timer = evtimer_new(ctx->base, sim_req_timer_handler, r);
    if (r->timer == NULL) {
        free(r);
        return NULL;
    }

    r->ctx = ctx;
    r->req = req;
    r->evcon = evhttp_request_get_connection(req);
    r->handler = handler;
    r->start_ms = sim_now_ms();
    r->total_tokens = -1;

    r->next = ctx->inflight_head;
    if (r->next != NULL) {
        r->next->prev = r;
    }
    ctx->inflight_head = r;
    ctx->inflight++;

    /*
     * The connection can go away while the timer is pending (a streaming
     * client hangs up); the close callback is the only notice we get
     * before the request memory is gone.
     *
     * evhttp keeps reading while it answers, to see the client leave, and
     * its read timeout would cut an answer that takes longer than
     * --idle-timeout; a request in flight gets the long timeout instead.
     */
    if (r->evcon != NULL) {
        evhttp_connection_set_closecb(r->evcon, sim_req_close_handler, r);
        evhttp_connection_set_timeout(r->evcon, SIM_HTTP_TIMEOUT);
    }

    return r;
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


int
sim_req_schedule(sim_req_t *r, double delay_ms)
{
    double          us;
    struct timeval  tv;

    if (!(delay_ms > 0)) {
        delay_ms = 0;
    }

    us = floor(delay_ms * 1000.0);
    tv.tv_sec = (time_t) (us / 1000000.0);
    tv.tv_usec = (suseconds_t) (us - (double) tv.tv_sec * 1000000.0);

    return evtimer_add(r->timer, &tv);
}


/*
 * Frees our state only: the evhttp request stays with its connection,
 * which frees it after the reply or when evhttp_free() runs.
 */
void
sim_req_finalize(sim_req_t *r)
{
    sim_ctx_t  *ctx;

    ctx = r->ctx;

    if (r->prev != NULL) {
        r->prev->next = r->next;

    } else {
        ctx->inflight_head = r->next;
    }

    if (r->next != NULL) {
        r->next->prev = r->prev;
    }

    ctx->inflight--;

    if (r->evcon != NULL) {
        evhttp_connection_set_closecb(r->evcon, NULL, NULL);
        sim_http_set_idle(ctx, r->evcon);
    }

    event_free(r->timer);
    cJSON_Delete(r->reply);
    free(r->prefix);

    if (r->chunk != NULL) {
        evbuffer_free(r->chunk);
    }

    free(r);
}


void
sim_req_free_all(sim_ctx_t *ctx)
{
    while (ctx->inflight_head != NULL) {
        sim_req_finalize(ctx->inflight_head);
    }
}


static void
sim_req_timer_handler(evutil_socket_t fd, short what, void *arg)
{
    sim_req_t  *r;

    (void) fd;
    (void) what;

    r = arg;
    r->handler(r);
}


static void
sim_req_close_handler(struct evhttp_connection *evcon, void *arg)
{
    int                     detached;
    sim_req_t              *r;
    struct evhttp_request  *req;

    (void) evcon;

    r = arg;
    req = r->req;

    /*
     * On EOF with the reply unfinished, evhttp unlinks the request from
     * the dying connection and leaves it to us (req->evcon == NULL);
     * otherwise the connection frees it itself.
     */
    detached = (evhttp_request_get_connection(req) == NULL);

    r->evcon = NULL;
    sim_req_finalize(r);

    if (detached) {
        evhttp_request_free(req);
    }
}


static void
sim_reply_send(sim_req_t *r, int with_latency)
{
    long                    total;
    char                   *body;
    size_t                  len;
    sim_ctx_t              *ctx;
    struct evhttp_request  *req;

    ctx = r->ctx;
    req = r->req;
    total = r->total_tokens;

    if (with_latency) {
        cJSON_AddNumberToObject(r->reply, "latency_ms",
                                (double) (sim_now_ms() - r->start_ms));
    }

    body = sim_json_print(r->reply, &len);

    /* our state goes first: sending may finish the connection */
    sim_req_finalize(r);

    if (body == NULL) {
        sim_http_send_oom(ctx, req);
        return;
    }

    sim_http_send_body(ctx, req, 200, "OK", body, len, total);
    cJSON_free(body);
}


static void
sim_reply_with_latency(sim_req_t *r)
{
    sim_reply_send(r, 1);
}


static void
sim_reply_plain(sim_req_t *r)
{
    sim_reply_send(r, 0);
}


static void
sim_delay_reply(sim_ctx_t *ctx, struct evhttp_request *req, cJSON *reply,
    long total_tokens, sim_req_handler_pt handler, double delay_ms)
{
    sim_req_t  *r;

    r = sim_req_create(ctx, req, handler);
    if (r == NULL) {
        cJSON_Delete(reply);
        sim_http_send_oom(ctx, req);
        return;
    }

    r->reply = reply;
    r->total_tokens = total_tokens;

    if (sim_req_schedule(r, delay_ms) != 0) {
        sim_req_finalize(r);
        sim_http_send_oom(ctx, req);
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


static void
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
        || cJSON_AddNumberToObject(root, "cut", (double) ctx->cut) == NULL)
    {
        cJSON_Delete(root);
        sim_http_send_oom(ctx, req);
        return;
    }

    sim_http_send_json(ctx, req, 200, "OK", root, -1);
    cJSON_Delete(root);
}


static void
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


static double
sim_latency_ms(sim_ctx_t *ctx, unsigned completion_tokens)
{
    return (ctx->conf.ttft_ms + completion_tokens * ctx->conf.tpot_ms)
           * sim_jitter(ctx);
}


static void
sim_infer_handler(sim_ctx_t *ctx, struct evhttp_request *req)
{
    char         id[32], *output;
    cJSON       *root, *prompt, *reply, *usage;
    size_t       prompt_len, output_len;
    uint64_t     hash;
    unsigned     max_tokens, prompt_tokens;
    const char  *err, *model;

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

    output = sim_model_generate(hash, max_tokens, &output_len);
    reply = cJSON_CreateObject();
    usage = sim_json_usage(prompt_tokens, max_tokens);

    snprintf(id, sizeof(id), "infer-%016" PRIx64, hash);

    if (output == NULL || reply == NULL || usage == NULL
        || cJSON_AddStringToObject(reply, "id", id) == NULL
        || cJSON_AddStringToObject(reply, "server_id", ctx->conf.id) == NULL
        || cJSON_AddStringToObject(reply, "model", model) == NULL
        || cJSON_AddStringToObject(reply, "output", output) == NULL
        || !cJSON_AddItemToObject(reply, "usage", usage))
    {
        free(output);
        cJSON_Delete(usage);
        cJSON_Delete(reply);
        cJSON_Delete(root);
        sim_http_send_oom(ctx, req);
        return;
    }

    free(output);
    cJSON_Delete(root);

    sim_delay_reply(ctx, req, reply, (long) prompt_tokens + max_tokens,
                    sim_reply_with_latency, sim_latency_ms(ctx, max_tokens));
}


static void
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

    sim_delay_reply(ctx, req, reply, -1, sim_reply_plain, SIM_SLOW_DELAY_MS);
}


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


static void
sim_chat_handler(sim_ctx_t *ctx, struct evhttp_request *req)
{
    int                 stream, include_usage;
    char               *prompt;
    cJSON              *root, *item, *reply;
    size_t              prompt_len;
    uint64_t            hash;
    unsigned            max_tokens, prompt_tokens;
    const char         *err, *model;
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

    if (stream) {
        if (sc.cut_after == -1) {
            sc.cut_after = sim_chat_cut_draw(ctx, max_tokens);
        }

        sc.model = model;
        sc.hash = hash;
        sc.prompt_tokens = prompt_tokens;
        sc.max_tokens = max_tokens;
        sc.include_usage = include_usage;

        if (sim_stream_start(ctx, req, &sc) != 0) {
            sim_http_send_oom(ctx, req);
        }

        cJSON_Delete(root);
        return;
    }

    reply = sim_chat_reply(ctx, model, hash, prompt_tokens, max_tokens);
    cJSON_Delete(root);

    if (reply == NULL) {
        sim_http_send_oom(ctx, req);
        return;
    }

    sim_delay_reply(ctx, req, reply, (long) prompt_tokens + max_tokens,
                    sim_reply_with_latency, sim_latency_ms(ctx, max_tokens));
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
