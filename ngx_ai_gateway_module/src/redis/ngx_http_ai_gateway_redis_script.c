/*
 * Lua scripts: EVALSHA first, and EVAL when Redis answers NOSCRIPT (a
 * restart, SCRIPT FLUSH), or where a cluster redirects the call (the EVAL
 * loads the script on that node too).
 */

#include "redis/ngx_http_ai_gateway_redis_node.h"

#include <ngx_sha1.h>


void
ngx_http_ai_gateway_redis_script_init(
    ngx_http_ai_gateway_redis_script_t *script)
{
    u_char      digest[20];
    ngx_sha1_t  sha1;

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, script->text.data, script->text.len);
    ngx_sha1_final(digest, &sha1);

    *ngx_hex_dump(script->sha1, digest, 20) = '\0';
}


ngx_http_ai_gateway_redis_cmd_t *
ngx_http_ai_gateway_redis_eval(ngx_pool_t *pool,
    ngx_http_ai_gateway_redis_reply_pt handler, void *data,
    ngx_http_ai_gateway_redis_script_t *script, ngx_uint_t numkeys,
    int argc, const char **argv, const size_t *argvlen)
{
    u_char                            *p;
    size_t                             size, *lens, sha_len;
    ngx_int_t                          i;
    const char                       **args;
    ngx_http_ai_gateway_redis_cmd_t   *cmd;
    ngx_http_ai_gateway_redis_argv_t   one;

    /* EVAL, the script, numkeys, then argv: copied for the retry */
    size = (argc + 3) * (sizeof(char *) + sizeof(size_t)) + NGX_INT_T_LEN;

    for (i = 0; i < argc; i++) {
        size += argvlen[i];
    }

    cmd = ngx_http_ai_gateway_redis_alloc(size);
    if (cmd == NULL) {
        return NULL;
    }

    args = (const char **) (cmd + 1);
    lens = (size_t *) (args + argc + 3);
    p = (u_char *) (lens + argc + 3);

    args[0] = "EVAL";
    lens[0] = 4;
    args[1] = (const char *) script->text.data;
    lens[1] = script->text.len;
    args[2] = (const char *) p;
    lens[2] = ngx_sprintf(p, "%ui", numkeys) - p;
    p += lens[2];

    for (i = 0; i < argc; i++) {
        args[i + 3] = (const char *) p;
        lens[i + 3] = argvlen[i];
        p = ngx_cpymem(p, argv[i], argvlen[i]);
    }

    cmd->argc = argc + 3;
    cmd->argv = args;
    cmd->argvlen = lens;

    /* where redirected, the EVAL is sent: it loads the script there too */
    cmd->eval.argc = cmd->argc;
    cmd->eval.argv = args;
    cmd->eval.argvlen = lens;
    cmd->block = &cmd->eval;
    cmd->nblock = 1;

    /* EVALSHA first, from a copy of the EVAL vector's head */
    sha_len = 40;

    args[0] = "EVALSHA";
    lens[0] = 7;
    args[1] = (const char *) script->sha1;
    lens[1] = sha_len;

    one.argc = argc + 3;
    one.argv = args;
    one.argvlen = lens;

    /* routed by KEYS[1]: the keys of one script share a hash tag */
    cmd = ngx_http_ai_gateway_redis_start(cmd, NULL,
                                          numkeys ? argv[0] : NULL,
                                          numkeys ? argvlen[0] : 0,
                                          pool, handler, data, 1, &one, 0);

    if (cmd) {
        /* hiredis copied the EVALSHA; turn the vector back into EVAL */
        args[0] = "EVAL";
        lens[0] = 4;
        args[1] = (const char *) script->text.data;
        lens[1] = script->text.len;
    }

    return cmd;
}
