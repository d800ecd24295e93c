/*
 * Prices (SPEC 8.4): what a request to a model may cost, for the money
 * zones ("ai_gateway_limit_zone ... rate=Nusd/d burst=Nusd").
 *
 *     ai_gateway_model_price MODEL input=USD output=USD [cached_input=USD];
 *     ai_gateway_model_price default input=USD output=USD
 *                            [cached_input=USD];
 *
 * USD per million tokens, as providers list them, parsed exactly into
 * pico-dollars per token (lib/agw_price.c).  A request is priced once, at
 * admission, by the model its body names: that model's line, else the
 * default line, else the highest price listed for each kind of token, and
 * then it counts as "unpriced" in every money zone it is charged in (an
 * operator sees a model nobody priced, and no one spends a budget on it
 * at a discount).  The prices are copied into the request's limiter ctx,
 * so a reload that changes them settles the requests already admitted at
 * the prices they reserved with.  cached_input defaults to the input
 * price: without a discount listed, a cached token costs what any other
 * does.
 */

#include "base/ngx_http_ai_gateway_request.h"
#include "limit/ngx_http_ai_gateway_limit.h"


/* what a request without a body costs: nothing */
static const agw_price_t  ngx_http_ai_gateway_limit_free;


static char *ngx_http_ai_gateway_limit_price_value(ngx_conf_t *cf,
    ngx_command_t *cmd, ngx_str_t *value, size_t skip, uint64_t *pico);


char *
ngx_http_ai_gateway_limit_price(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ai_gateway_limit_main_conf_t *lmcf = conf;

    uint64_t                            input, output, cached;
    ngx_str_t                          *value, *model;
    ngx_uint_t                          i, has_input, has_output, has_cached;
    ngx_http_ai_gateway_limit_price_t  *p, *prices;

    value = cf->args->elts;
    model = &value[1];

    if (model->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" names no model", &cmd->name);
        return NGX_CONF_ERROR;
    }

    input = 0;
    output = 0;
    cached = 0;
    has_input = 0;
    has_output = 0;
    has_cached = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "input=", 6) == 0) {
            if (has_input) {
                goto duplicate;
            }

            if (ngx_http_ai_gateway_limit_price_value(cf, cmd, &value[i], 6,
                                                      &input)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            has_input = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "output=", 7) == 0) {
            if (has_output) {
                goto duplicate;
            }

            if (ngx_http_ai_gateway_limit_price_value(cf, cmd, &value[i], 7,
                                                      &output)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            has_output = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "cached_input=", 13) == 0) {
            if (has_cached) {
                goto duplicate;
            }

            if (ngx_http_ai_gateway_limit_price_value(cf, cmd, &value[i], 13,
                                                      &cached)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            has_cached = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"%V\"", &value[i],
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (!has_input || !has_output) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" of model \"%V\" must have \"input\" and "
                           "\"output\" prices", &cmd->name, model);
        return NGX_CONF_ERROR;
    }

    if (!has_cached) {
        cached = input;
    }

    if (model->len == 7 && ngx_strncmp(model->data, "default", 7) == 0) {
        if (lmcf->has_default) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate \"%V\" for the default price",
                               &cmd->name);
            return NGX_CONF_ERROR;
        }

        lmcf->price_default.input = input;
        lmcf->price_default.output = output;
        lmcf->price_default.cached_input = cached;
        lmcf->has_default = 1;

        return NGX_CONF_OK;
    }

    prices = lmcf->prices.elts;

    for (i = 0; i < lmcf->prices.nelts; i++) {
        if (prices[i].model.len == model->len
            && ngx_strncmp(prices[i].model.data, model->data, model->len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate \"%V\" for model \"%V\"",
                               &cmd->name, model);
            return NGX_CONF_ERROR;
        }
    }

    p = ngx_array_push(&lmcf->prices);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    p->model = *model;
    p->price.input = input;
    p->price.output = output;
    p->price.cached_input = cached;

    return NGX_CONF_OK;

duplicate:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" of model \"%V\" has \"%V\" twice", &cmd->name,
                       model, &value[i]);

    return NGX_CONF_ERROR;
}


static char *
ngx_http_ai_gateway_limit_price_value(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_str_t *value, size_t skip, uint64_t *pico)
{
    /* USD per 1M tokens, read as micro-dollars: pico-dollars per token */

    if (agw_price_parse(value->data + skip, value->len - skip,
                        AGW_PRICE_MAX_PICO, pico)
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid price \"%V\" in \"%V\": it must be USD "
                           "per 1M tokens, a decimal from 0 to 1000000 with "
                           "at most 6 decimal places", value, &cmd->name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * Once the http{} block is read: the highest price of each kind, for the
 * models no line names when there is no default, and a money zone needs
 * prices to count anything.
 */

ngx_int_t
ngx_http_ai_gateway_limit_price_init(ngx_conf_t *cf,
    ngx_http_ai_gateway_limit_main_conf_t *lmcf)
{
    ngx_uint_t                          i;
    ngx_http_ai_gateway_limit_price_t  *prices;

    ngx_memzero(&lmcf->price_highest, sizeof(agw_price_t));

    prices = lmcf->prices.elts;

    for (i = 0; i < lmcf->prices.nelts; i++) {
        agw_price_max(&lmcf->price_highest, &prices[i].price);
    }

    if (lmcf->usd && lmcf->prices.nelts == 0 && !lmcf->has_default) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "an \"ai_gateway_limit_zone\" counts money "
                      "(\"rate=...usd/...\") but no \"ai_gateway_model_price\" "
                      "is set");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The request's prices and its priced estimate, once: the prompt's
 * tokens at the input price and what it may write (max_tokens, else the
 * default max) at the output price, rounded up.
 */

ngx_int_t
ngx_http_ai_gateway_limit_priced(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t *ctx)
{
    uint64_t                                max;
    ngx_str_t                              *model;
    ngx_uint_t                              i;
    ngx_http_ai_gateway_limit_price_t      *prices;
    ngx_http_ai_gateway_request_info_t     *info;
    ngx_http_ai_gateway_limit_main_conf_t  *lmcf;

    if (ctx->priced) {
        return NGX_OK;
    }

    info = ngx_http_ai_gateway_request_info(r);
    if (info == NULL) {
        return NGX_ERROR;
    }

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_ai_gateway_limit_module);

    /*
     * a request without a body (GET /v1/models) is no inference: it costs
     * nothing, whatever model it does not name
     */

    if (r->main->headers_in.content_length_n <= 0
        && !r->main->headers_in.chunked)
    {
        ctx->price = &ngx_http_ai_gateway_limit_free;
        ctx->estimate_usd = 0;
        ctx->priced = 1;
        return NGX_OK;
    }

    model = &info->model;
    prices = lmcf->prices.elts;

    for (i = 0; i < lmcf->prices.nelts; i++) {
        if (prices[i].model.len == model->len
            && ngx_strncmp(prices[i].model.data, model->data, model->len) == 0)
        {
            break;
        }
    }

    if (i < lmcf->prices.nelts) {
        ctx->price = &prices[i].price;

    } else if (lmcf->has_default) {
        ctx->price = &lmcf->price_default;

    } else {
        ctx->price = &lmcf->price_highest;
        ctx->unpriced = 1;
    }

    max = info->has_max_tokens ? info->max_tokens : lcf->tokens_default_max;

    ctx->estimate_usd = agw_price_cost(ctx->price,
                               ngx_http_ai_gateway_request_prompt_tokens(info),
                               0, max);
    ctx->priced = 1;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ai_gateway limit: model \"%V\"%s, estimate %uL micro-USD",
                   model, ctx->unpriced ? " unpriced" : "",
                   ctx->estimate_usd);

    return NGX_OK;
}
