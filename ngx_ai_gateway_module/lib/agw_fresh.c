
/*
 * Freshness of an upstream answer.
 *
 * Cache-Control is read as RFC 9111 5.2 writes it, over every line of the
 * answer: a comma-separated list of `token [ "=" ( token / quoted-string ) ]`
 * with optional whitespace, names compared without case.  A quoted string
 * is skipped with its backslash escapes, so `x="max-age=0"` is not a
 * max-age; a malformed element is skipped up to the next comma outside
 * quotes.  A directive that appears more than once counts at its most
 * restrictive (the smallest max-age).
 *
 * X-Accel-Expires follows ngx_http_upstream_process_accel_expires(): a
 * number of seconds, "@" and an absolute unix time, and 0 for "do not
 * cache"; anything else is ignored.  Unlike nginx's proxy_cache it never
 * turns a no-store, no-cache or private answer into a cached one: an
 * answer that says it is one client's stays one client's.
 */


#include "agw_fresh.h"


#define AGW_FRESH_MAX  ((int64_t) 1 << 40)   /* seconds: "forever" */


static int
agw_fresh_tchar(uint8_t c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
        || (c >= 'A' && c <= 'Z'))
    {
        return 1;
    }

    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
    case '+': case '-': case '.': case '^': case '_': case '`': case '|':
    case '~':
        return 1;
    }

    return 0;
}


static int
agw_fresh_ows(uint8_t c)
{
    return c == ' ' || c == '\t';
}


/* s of length n against the lowercase C string name */

static int
agw_fresh_is(const uint8_t *s, size_t n, const char *name)
{
    size_t   i;
    uint8_t  c;

    for (i = 0; i < n; i++) {
        c = s[i];

        if (c >= 'A' && c <= 'Z') {
            c |= 0x20;
        }

        if (name[i] == '\0' || c != (uint8_t) name[i]) {
            return 0;
        }
    }

    return name[n] == '\0';
}


/* delta-seconds: 1*DIGIT, capped; -1 if not a number */

static int64_t
agw_fresh_delta(const uint8_t *p, size_t len)
{
    size_t   i;
    int64_t  n;

    if (len == 0) {
        return -1;
    }

    n = 0;

    for (i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }

        if (n < AGW_FRESH_MAX) {
            n = n * 10 + (p[i] - '0');
        }
    }

    return n < AGW_FRESH_MAX ? n : AGW_FRESH_MAX;
}


typedef struct {
    unsigned        no_store:1;
    unsigned        no_cache:1;
    unsigned        private:1;
    int64_t         s_maxage;            /* -1: none */
    int64_t         max_age;             /* -1: none */
} agw_fresh_cc_t;


static void
agw_fresh_directive(agw_fresh_cc_t *cc, const uint8_t *name, size_t name_len,
    const uint8_t *arg, size_t arg_len)
{
    int64_t   n, *age;

    if (agw_fresh_is(name, name_len, "no-store")) {
        cc->no_store = 1;
        return;
    }

    if (agw_fresh_is(name, name_len, "no-cache")) {
        cc->no_cache = 1;
        return;
    }

    if (agw_fresh_is(name, name_len, "private")) {
        cc->private = 1;
        return;
    }

    if (agw_fresh_is(name, name_len, "s-maxage")) {
        age = &cc->s_maxage;

    } else if (agw_fresh_is(name, name_len, "max-age")) {
        age = &cc->max_age;

    } else {
        return;
    }

    /* no argument, or not a number: already stale */

    n = (arg == NULL) ? -1 : agw_fresh_delta(arg, arg_len);

    if (n < 0) {
        n = 0;
    }

    if (*age < 0 || n < *age) {
        *age = n;
    }
}


static void
agw_fresh_parse_cc(agw_fresh_cc_t *cc, const uint8_t *p, size_t len)
{
    size_t          i, name, name_len, arg_len;
    const uint8_t  *arg;
    uint8_t         q;

    i = 0;

    while (i < len) {

        while (i < len && (agw_fresh_ows(p[i]) || p[i] == ',')) {
            i++;
        }

        name = i;

        while (i < len && agw_fresh_tchar(p[i])) {
            i++;
        }

        name_len = i - name;
        arg = NULL;
        arg_len = 0;

        while (i < len && agw_fresh_ows(p[i])) {
            i++;
        }

        if (name_len && i < len && p[i] == '=') {
            i++;

            while (i < len && agw_fresh_ows(p[i])) {
                i++;
            }

            if (i < len && p[i] == '"') {
                /* the quoted string's content, escapes not undone */
                i++;
                arg = p + i;

                while (i < len && p[i] != '"') {
                    i += (p[i] == '\\' && i + 1 < len) ? 2 : 1;
                }

                arg_len = (size_t) (p + i - arg);

                if (i < len) {
                    i++;
                }

            } else {
                arg = p + i;

                while (i < len && agw_fresh_tchar(p[i])) {
                    i++;
                }

                arg_len = (size_t) (p + i - arg);
            }

            while (i < len && agw_fresh_ows(p[i])) {
                i++;
            }
        }

        if (name_len && (i == len || p[i] == ',')) {
            agw_fresh_directive(cc, p + name, name_len, arg, arg_len);
            continue;
        }

        /* malformed: skip to the next comma outside quotes */

        q = 0;

        while (i < len && (q || p[i] != ',')) {
            if (q && p[i] == '\\') {
                i++;

            } else if (p[i] == '"') {
                q = !q;
            }

            i++;
        }
    }
}


int64_t
agw_fresh_ttl(const agw_fresh_facts_t *f, const char **why)
{
    size_t          i;
    int64_t         lifetime, base, n;
    const char     *reason;
    agw_fresh_cc_t  cc;

    cc.no_store = 0;
    cc.no_cache = 0;
    cc.private = 0;
    cc.s_maxage = -1;
    cc.max_age = -1;

    for (i = 0; i < f->ncache_control; i++) {
        agw_fresh_parse_cc(&cc, f->cache_control[i].data,
                           f->cache_control[i].len);
    }

    reason = NULL;
    lifetime = -1;

    if (cc.no_store) {
        reason = "no-store";

    } else if (cc.no_cache) {
        reason = "no-cache";

    } else if (cc.private) {
        reason = "private";
    }

    if (reason) {
        goto not_stored;
    }

    if (f->accel_expires && f->accel_expires_len) {

        if (f->accel_expires[0] == '@') {
            n = agw_fresh_delta(f->accel_expires + 1,
                                f->accel_expires_len - 1);
            if (n >= 0) {
                lifetime = n - f->now;
            }

        } else {
            n = agw_fresh_delta(f->accel_expires, f->accel_expires_len);
            if (n >= 0) {
                lifetime = n;
            }
        }

        if (n >= 0) {
            reason = "X-Accel-Expires";
            goto done;
        }
    }

    if (cc.s_maxage >= 0) {
        lifetime = cc.s_maxage;
        reason = "s-maxage";

    } else if (cc.max_age >= 0) {
        lifetime = cc.max_age;
        reason = "max-age";

    } else if (f->expires != AGW_FRESH_ABSENT) {
        base = (f->date >= 0) ? f->date : f->now;
        lifetime = (f->expires >= 0) ? f->expires - base : 0;
        reason = "Expires";

    } else {
        return f->max_ttl;
    }

done:

    if (why) {
        *why = reason;
    }

    if (lifetime > 0) {
        return lifetime < f->max_ttl ? lifetime : f->max_ttl;
    }

    return 0;

not_stored:

    if (why) {
        *why = reason;
    }

    return 0;
}


int
agw_token_list_has(const uint8_t *list, size_t len, const uint8_t *name,
    size_t name_len)
{
    size_t   i, j, start, end;
    uint8_t  a, b;

    i = 0;

    while (i < len) {

        while (i < len && (agw_fresh_ows(list[i]) || list[i] == ',')) {
            i++;
        }

        start = i;

        while (i < len && list[i] != ',') {
            i++;
        }

        end = i;

        while (end > start && agw_fresh_ows(list[end - 1])) {
            end--;
        }

        if (end - start != name_len || name_len == 0) {
            continue;
        }

        for (j = 0; j < name_len; j++) {
            a = list[start + j];
            b = name[j];

            if (a >= 'A' && a <= 'Z') {
                a |= 0x20;
            }

            if (b >= 'A' && b <= 'Z') {
                b |= 0x20;
            }

            if (a != b) {
                break;
            }
        }

        if (j == name_len) {
            return 1;
        }
    }

    return 0;
}
