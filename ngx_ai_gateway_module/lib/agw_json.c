
/*
 * JSON for cache keys and token budgets.
 *
 * Two SDKs that send the same chat request rarely send the same bytes: one
 * writes "model" first, one "messages"; one pretty-prints, one escapes
 * every non-ASCII character; one writes 1.0 where the other writes 1.  The
 * canonical form below makes those one key: members of every object sorted
 * bytewise by their unescaped UTF-8 name, no insignificant whitespace,
 * strings unescaped and written back with the fewest escapes (only '"',
 * '\' and the C0 controls, with the short forms where JSON has them and
 * \u00xx with lower-case hex otherwise), numbers by value, arrays in their
 * order.  The result is itself JSON, and canonicalising it again gives the
 * same bytes (the fuzzer holds it to that).
 *
 * Numbers are never converted to double: a double would merge 1e400 with
 * 1e401 (both infinity) and 10000000000000001 with 10000000000000000.  The
 * canonical number is computed from the digits: the integer and fraction
 * digits make one digit string D with a decimal exponent E; leading zeros
 * of D and trailing zeros (moved into E) are dropped; zero, negative zero
 * included, is "0".  It is written as D when E is 0, as D followed by E
 * zeros when E is 1 to 20, and as "DeE" otherwise: 1.0, 1 and 10e-1 are
 * "1", 1E2 is "100", 1.5 is "15e-1", 1e21 is "1e21", 1e400 is "1e400".  An exponent whose
 * digits (leading zeros aside) are more than nine is ERANGE, not rounded.
 *
 * What is not canonicalisable returns an error and writes nothing, and the
 * caller keys by the raw bytes: anything RFC 8259 rejects (a raw control
 * in a string, a bad escape, a lone surrogate, bytes that are not UTF-8 as
 * RFC 3629 defines it, overlong forms and encoded surrogates included,
 * leading zeros, trailing commas, trailing garbage), nesting deeper than
 * AGW_JSON_MAX_DEPTH, and an object that repeats a member name: parsers
 * disagree about which duplicate wins, so two bodies with the same
 * canonical form could mean different things to the upstream.
 *
 * The canonicaliser reads its input twice.  The first pass validates it
 * and records every value as a 12-byte node in the caller's scratch (a
 * "tape"): where it starts, its length, and a link to the next sibling in
 * output order.  When an object closes, its members' list is merge-sorted
 * in place through those links (names without escapes compare with one
 * memcmp), so duplicates are adjacent and are found before anything is
 * written.  The second pass walks the tape and writes the output through
 * a 1 KiB buffer; strings without escapes are copied as they are.  Both
 * passes are linear apart from the sort.  The same first pass also reads
 * what the token limiter needs (agw_json_request_t), so the gateway reads
 * a request body once for both.
 *
 * Answers come in pieces, so the push tokenizer at the end is a state
 * machine that keeps a few dozen bytes, not the text: it can be cut at any
 * byte.  It is strict about structure, escapes and surrogates but passes
 * bytes >= 0x80 in strings through unchecked: it reads usage figures out
 * of answers, it does not key them.
 */


#include <string.h>

#include "agw_json.h"


#define AGW_JSON_ESC_BIT  0x80000000u    /* node len: string has escapes */


typedef struct {
    uint32_t  start;                     /* offset of the first byte */
    uint32_t  len;                       /* strings: bytes with the quotes,
                                            | AGW_JSON_ESC_BIT; containers:
                                            first child in output order */
    uint32_t  link;                      /* next sibling in output order;
                                            members: from name to name */
} agw_json_node_t;


/* what a value means to the request scan */
enum {
    AGW_R_NONE = 0,
    AGW_R_TOP,
    AGW_R_MODEL,
    AGW_R_PROMPT,                        /* string or array of strings */
    AGW_R_TEXT,                          /* a string that counts */
    AGW_R_MESSAGES,                      /* array of messages */
    AGW_R_MESSAGE,                       /* object with `content` */
    AGW_R_CONTENT,                       /* string or array of parts */
    AGW_R_PART,                          /* object with `text` */
    AGW_R_MAX_TOKENS,
    AGW_R_MAX_COMPLETION,
    AGW_R_STREAM,
    AGW_R_STREAM_OPTIONS,
    AGW_R_INCLUDE_USAGE
};


typedef struct {
    const uint8_t         *start;
    const uint8_t         *p;
    const uint8_t         *end;
    agw_json_node_t       *nodes;        /* NULL: no tape */
    uint32_t               nnodes;
    uint32_t               cap;
    unsigned               depth;
    int                    err;          /* EDUP, ERANGE, ENOMEM: the parse
                                            goes on to fill req */
    const agw_json_str_t  *ignore;
    size_t                 nignore;
    agw_json_request_t    *req;
    uint64_t               max_tokens;
    uint64_t               max_completion;
    unsigned               has_max_tokens:1;
    unsigned               has_max_completion:1;
} agw_json_parse_t;


typedef struct {
    const uint8_t          *in;
    const agw_json_node_t  *nodes;
    agw_json_write_pt       write;
    void                   *ctx;
    int                     rc;
    size_t                  n;
    uint8_t                 buf[1024];
} agw_json_out_t;


/* string bytes: 0 plain ASCII, 1 '"', 2 '\', 3 control, 4 >= 0x80 */
static const uint8_t  agw_json_str_class[256] = {
    [0x00 ... 0x1f] = 3,
    ['"'] = 1,
    ['\\'] = 2,
    [0x80 ... 0xff] = 4
};


static int agw_json_parse_value(agw_json_parse_t *ps, unsigned role,
    uint32_t *out);
static void agw_json_emit_value(agw_json_out_t *o, uint32_t idx);


static void
agw_json_skip_ws(agw_json_parse_t *ps)
{
    const uint8_t  *p;

    for (p = ps->p; p < ps->end; p++) {
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
            break;
        }
    }

    ps->p = p;
}


static int
agw_json_hex(uint8_t c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


static int
agw_json_hex4(const uint8_t *p, uint32_t *cp)
{
    int       i, d;
    uint32_t  v;

    v = 0;

    for (i = 0; i < 4; i++) {
        d = agw_json_hex(p[i]);
        if (d < 0) {
            return -1;
        }

        v = v << 4 | (uint32_t) d;
    }

    *cp = v;

    return 0;
}


/*
 * the escape at p ('\'): bytes it takes, 0 if invalid; a surrogate pair is
 * one code point, a lone surrogate is invalid
 */

static size_t
agw_json_escape(const uint8_t *p, const uint8_t *end, uint32_t *cp)
{
    uint32_t  lo;

    if (end - p < 2) {
        return 0;
    }

    switch (p[1]) {
    case '"':  *cp = '"'; return 2;
    case '\\': *cp = '\\'; return 2;
    case '/':  *cp = '/'; return 2;
    case 'b':  *cp = 0x08; return 2;
    case 'f':  *cp = 0x0c; return 2;
    case 'n':  *cp = 0x0a; return 2;
    case 'r':  *cp = 0x0d; return 2;
    case 't':  *cp = 0x09; return 2;
    case 'u':
        break;
    default:
        return 0;
    }

    if (end - p < 6 || agw_json_hex4(p + 2, cp) != 0) {
        return 0;
    }

    if (*cp < 0xd800 || *cp > 0xdfff) {
        return 6;
    }

    if (*cp > 0xdbff
        || end - p < 12 || p[6] != '\\' || p[7] != 'u'
        || agw_json_hex4(p + 8, &lo) != 0
        || lo < 0xdc00 || lo > 0xdfff)
    {
        return 0;
    }

    *cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);

    return 12;
}


/* the UTF-8 sequence at p (RFC 3629): its length, 0 if invalid */

static size_t
agw_json_utf8(const uint8_t *p, const uint8_t *end, uint32_t *cp)
{
    size_t   n, i;
    uint8_t  c, lo, hi;

    c = p[0];
    lo = 0x80;
    hi = 0xbf;

    if (c < 0x80) {
        *cp = c;
        return 1;

    } else if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        *cp = c & 0x1f;

    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        *cp = c & 0x0f;
        if (c == 0xe0) {
            lo = 0xa0;                   /* no overlong forms */
        } else if (c == 0xed) {
            hi = 0x9f;                   /* no surrogates */
        }

    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        *cp = c & 0x07;
        if (c == 0xf0) {
            lo = 0x90;
        } else if (c == 0xf4) {
            hi = 0x8f;                   /* nothing above U+10FFFF */
        }

    } else {
        return 0;
    }

    if ((size_t) (end - p) < n || p[1] < lo || p[1] > hi) {
        return 0;
    }

    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }

        *cp = *cp << 6 | (p[i] & 0x3f);
    }

    return n;
}


static size_t
agw_json_utf8_len(uint32_t cp)
{
    return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}


static size_t
agw_json_utf8_put(uint8_t *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (uint8_t) cp;
        return 1;
    }

    if (cp < 0x800) {
        out[0] = (uint8_t) (0xc0 | cp >> 6);
        out[1] = (uint8_t) (0x80 | (cp & 0x3f));
        return 2;
    }

    if (cp < 0x10000) {
        out[0] = (uint8_t) (0xe0 | cp >> 12);
        out[1] = (uint8_t) (0x80 | (cp >> 6 & 0x3f));
        out[2] = (uint8_t) (0x80 | (cp & 0x3f));
        return 3;
    }

    out[0] = (uint8_t) (0xf0 | cp >> 18);
    out[1] = (uint8_t) (0x80 | (cp >> 12 & 0x3f));
    out[2] = (uint8_t) (0x80 | (cp >> 6 & 0x3f));
    out[3] = (uint8_t) (0x80 | (cp & 0x3f));
    return 4;
}


/* the next code point of valid string content at *pp, unescaped */

static uint32_t
agw_json_next_cp(const uint8_t **pp, const uint8_t *end)
{
    size_t    n;
    uint32_t  cp;

    if (**pp == '\\') {
        n = agw_json_escape(*pp, end, &cp);
    } else {
        n = agw_json_utf8(*pp, end, &cp);
    }

    *pp += n ? n : 1;                    /* validated input: n > 0 */

    return cp;
}


/* bytewise order of the unescaped UTF-8, which is code point order */

static int
agw_json_name_cmp(const uint8_t *in, const agw_json_node_t *a,
    const agw_json_node_t *b)
{
    int             rc;
    size_t          la, lb;
    uint32_t        ca, cb;
    const uint8_t  *pa, *pb, *ea, *eb;

    pa = in + a->start + 1;
    pb = in + b->start + 1;
    la = (a->len & ~AGW_JSON_ESC_BIT) - 2;
    lb = (b->len & ~AGW_JSON_ESC_BIT) - 2;

    if (((a->len | b->len) & AGW_JSON_ESC_BIT) == 0) {
        rc = memcmp(pa, pb, la < lb ? la : lb);
        if (rc != 0) {
            return rc;
        }

        return (la > lb) - (la < lb);
    }

    ea = pa + la;
    eb = pb + lb;

    while (pa < ea && pb < eb) {
        ca = agw_json_next_cp(&pa, ea);
        cb = agw_json_next_cp(&pb, eb);

        if (ca != cb) {
            return ca < cb ? -1 : 1;
        }
    }

    return (pa < ea) - (pb < eb);
}


/* a name node against a plain (unescaped) name */

static int
agw_json_name_is(const uint8_t *in, const agw_json_node_t *n,
    const uint8_t *name, size_t len)
{
    size_t          nl;
    const uint8_t  *p, *e, *q, *qe;
    uint8_t         u[4];
    size_t          ul;

    p = in + n->start + 1;
    nl = (n->len & ~AGW_JSON_ESC_BIT) - 2;

    if ((n->len & AGW_JSON_ESC_BIT) == 0) {
        return nl == len && memcmp(p, name, len) == 0;
    }

    e = p + nl;
    q = name;
    qe = name + len;

    while (p < e) {
        ul = agw_json_utf8_put(u, agw_json_next_cp(&p, e));

        if ((size_t) (qe - q) < ul || memcmp(q, u, ul) != 0) {
            return 0;
        }

        q += ul;
    }

    return q == qe;
}


static uint32_t
agw_json_node_new(agw_json_parse_t *ps)
{
    agw_json_node_t  *n;

    if (ps->nodes == NULL) {
        return 0;
    }

    if (ps->nnodes == ps->cap) {
        ps->nodes = NULL;                /* the parse goes on for req */
        ps->err = AGW_JSON_ENOMEM;
        return 0;
    }

    n = &ps->nodes[ps->nnodes];
    n->start = (uint32_t) (ps->p - ps->start);
    n->len = 0;
    n->link = 0;

    return ps->nnodes++;
}


/*
 * Stable merge sort of a linked list of name nodes (S. Tatham's bottom-up
 * list merge sort): O(n log n) with no memory beyond the links.
 */

static uint32_t
agw_json_sort(agw_json_parse_t *ps, uint32_t list)
{
    size_t            insize, psize, qsize, nmerges, i;
    uint32_t          p, q, e, tail;
    agw_json_node_t  *nd;

    nd = ps->nodes;

    if (list == 0 || nd[list].link == 0) {
        return list;
    }

    for (insize = 1; /* void */; insize *= 2) {
        p = list;
        list = 0;
        tail = 0;
        nmerges = 0;

        while (p) {
            nmerges++;
            q = p;
            psize = 0;

            for (i = 0; i < insize; i++) {
                psize++;
                q = nd[q].link;
                if (q == 0) {
                    break;
                }
            }

            qsize = insize;

            while (psize > 0 || (qsize > 0 && q)) {

                if (psize == 0) {
                    e = q; q = nd[q].link; qsize--;

                } else if (qsize == 0 || q == 0) {
                    e = p; p = nd[p].link; psize--;

                } else if (agw_json_name_cmp(ps->start, &nd[p], &nd[q])
                           <= 0)
                {
                    e = p; p = nd[p].link; psize--;

                } else {
                    e = q; q = nd[q].link; qsize--;
                }

                if (tail) {
                    nd[tail].link = e;
                } else {
                    list = e;
                }

                tail = e;
            }

            p = q;
        }

        nd[tail].link = 0;

        if (nmerges <= 1) {
            return list;
        }
    }
}


/* sort the members, find duplicates, drop ignored names at top level */

static uint32_t
agw_json_members(agw_json_parse_t *ps, uint32_t list)
{
    size_t            i;
    uint32_t          m, prev, head;
    agw_json_node_t  *nd;

    nd = ps->nodes;
    list = agw_json_sort(ps, list);

    for (m = list; m && nd[m].link; m = nd[m].link) {
        if (agw_json_name_cmp(ps->start, &nd[m], &nd[nd[m].link]) == 0) {
            if (ps->err == AGW_JSON_OK) {
                ps->err = AGW_JSON_EDUP;
            }

            break;
        }
    }

    if (ps->depth != 1 || ps->nignore == 0) {
        return list;
    }

    head = list;
    prev = 0;

    for (m = list; m; m = nd[m].link) {
        for (i = 0; i < ps->nignore; i++) {
            if (agw_json_name_is(ps->start, &nd[m], ps->ignore[i].data,
                                 ps->ignore[i].len))
            {
                break;
            }
        }

        if (i == ps->nignore) {
            prev = m;
            continue;
        }

        if (prev) {
            nd[prev].link = nd[m].link;
        } else {
            head = nd[m].link;
        }
    }

    return head;
}


#define agw_json_name_eq(p, n, s)                                            \
    ((n) == sizeof(s) - 1 && memcmp(p, s, sizeof(s) - 1) == 0)


static unsigned
agw_json_member_role(unsigned role, const uint8_t *name, size_t n)
{
    switch (role) {

    case AGW_R_TOP:
        if (agw_json_name_eq(name, n, "model")) {
            return AGW_R_MODEL;
        }
        if (agw_json_name_eq(name, n, "prompt")
            || agw_json_name_eq(name, n, "input"))
        {
            return AGW_R_PROMPT;
        }
        if (agw_json_name_eq(name, n, "messages")) {
            return AGW_R_MESSAGES;
        }
        if (agw_json_name_eq(name, n, "system")) {
            return AGW_R_CONTENT;
        }
        if (agw_json_name_eq(name, n, "max_tokens")) {
            return AGW_R_MAX_TOKENS;
        }
        if (agw_json_name_eq(name, n, "max_completion_tokens")
            || agw_json_name_eq(name, n, "max_output_tokens"))
        {
            return AGW_R_MAX_COMPLETION;
        }
        if (agw_json_name_eq(name, n, "stream")) {
            return AGW_R_STREAM;
        }
        if (agw_json_name_eq(name, n, "stream_options")) {
            return AGW_R_STREAM_OPTIONS;
        }
        return AGW_R_NONE;

    case AGW_R_MESSAGE:
        return agw_json_name_eq(name, n, "content") ? AGW_R_CONTENT
                                                    : AGW_R_NONE;

    case AGW_R_PART:
        return agw_json_name_eq(name, n, "text") ? AGW_R_TEXT : AGW_R_NONE;

    case AGW_R_STREAM_OPTIONS:
        return agw_json_name_eq(name, n, "include_usage")
               ? AGW_R_INCLUDE_USAGE : AGW_R_NONE;
    }

    return AGW_R_NONE;
}


static int
agw_json_parse_string(agw_json_parse_t *ps, unsigned role, uint32_t *out,
    int *escaped)
{
    size_t           n;
    uint32_t         cp, idx;
    uint64_t         saved;
    const uint8_t   *q, *end;

    idx = agw_json_node_new(ps);
    end = ps->end;
    q = ps->p + 1;
    saved = 0;
    *escaped = 0;

    for ( ;; ) {
        while (q < end && agw_json_str_class[*q] == 0) {
            q++;
        }

        if (q == end) {
            return AGW_JSON_EINVAL;
        }

        switch (agw_json_str_class[*q]) {

        case 1:
            goto done;

        case 2:
            n = agw_json_escape(q, end, &cp);
            if (n == 0) {
                return AGW_JSON_EINVAL;
            }

            saved += n - agw_json_utf8_len(cp);
            *escaped = 1;
            q += n;
            break;

        case 3:
            return AGW_JSON_EINVAL;

        default:
            n = agw_json_utf8(q, end, &cp);
            if (n == 0) {
                return AGW_JSON_EINVAL;
            }

            q += n;
        }
    }

done:

    q++;

    if (idx) {
        ps->nodes[idx].len = (uint32_t) (q - ps->p)
                             | (*escaped ? AGW_JSON_ESC_BIT : 0);
    }

    if (ps->req) {
        if (role == AGW_R_MODEL) {
            ps->req->model = ps->p + 1;
            ps->req->model_len = (size_t) (q - ps->p) - 2;
            ps->req->model_escaped = *escaped;

        } else if (role == AGW_R_TEXT || role == AGW_R_PROMPT
                   || role == AGW_R_CONTENT)
        {
            ps->req->prompt_bytes += (uint64_t) (q - ps->p) - 2 - saved;
        }
    }

    *out = idx;
    ps->p = q;

    return AGW_JSON_OK;
}


static int
agw_json_parse_number(agw_json_parse_t *ps, unsigned role, uint32_t *out)
{
    int             plain, neg;
    size_t          sig;
    uint32_t        idx;
    uint64_t        v;
    const uint8_t  *p, *end, *digits;

    p = ps->p;
    end = ps->end;
    plain = 1;
    neg = (*p == '-');

    if (neg) {
        p++;
    }

    digits = p;

    if (p < end && *p == '0') {
        p++;

    } else if (p < end && *p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }

    } else {
        return AGW_JSON_EINVAL;
    }

    if (p < end && *p == '.') {
        plain = 0;
        p++;

        if (p == end || *p < '0' || *p > '9') {
            return AGW_JSON_EINVAL;
        }

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < end && (*p == 'e' || *p == 'E')) {
        plain = 0;
        p++;

        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == end || *p < '0' || *p > '9') {
            return AGW_JSON_EINVAL;
        }

        while (p < end && *p == '0') {
            p++;
        }

        for (sig = 0; p < end && *p >= '0' && *p <= '9'; sig++) {
            p++;
        }

        if (sig > 9 && ps->err == AGW_JSON_OK) {
            ps->err = AGW_JSON_ERANGE;
        }
    }

    idx = agw_json_node_new(ps);
    if (idx) {
        ps->nodes[idx].len = (uint32_t) (p - ps->p);
    }

    *out = idx;

    if (ps->req && plain && !neg
        && (role == AGW_R_MAX_TOKENS || role == AGW_R_MAX_COMPLETION))
    {
        for (v = 0; digits < p; digits++) {
            v = v * 10 + (uint64_t) (*digits - '0');
            if (v >= AGW_JSON_MAX_INT) {
                v = AGW_JSON_MAX_INT;
                break;
            }
        }

        if (role == AGW_R_MAX_TOKENS) {
            ps->max_tokens = v;
            ps->has_max_tokens = 1;

        } else {
            ps->max_completion = v;
            ps->has_max_completion = 1;
        }
    }

    ps->p = p;

    return AGW_JSON_OK;
}



static int
agw_json_parse_object(agw_json_parse_t *ps, unsigned role, uint32_t *out)
{
    int             rc, esc;
    uint32_t        idx, name, val, head, tail;
    unsigned        child;
    const uint8_t  *ns;

    if (++ps->depth > AGW_JSON_MAX_DEPTH) {
        return AGW_JSON_EDEPTH;
    }

    idx = agw_json_node_new(ps);
    ps->p++;
    head = 0;
    tail = 0;

    agw_json_skip_ws(ps);

    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        goto done;
    }

    for ( ;; ) {
        agw_json_skip_ws(ps);

        if (ps->p == ps->end || *ps->p != '"') {
            return AGW_JSON_EINVAL;
        }

        ns = ps->p;

        rc = agw_json_parse_string(ps, AGW_R_NONE, &name, &esc);
        if (rc != AGW_JSON_OK) {
            return rc;
        }

        child = AGW_R_NONE;

        if (role != AGW_R_NONE && ps->req && !esc) {
            child = agw_json_member_role(role, ns + 1,
                                         (size_t) (ps->p - ns) - 2);
        }

        agw_json_skip_ws(ps);

        if (ps->p == ps->end || *ps->p != ':') {
            return AGW_JSON_EINVAL;
        }

        ps->p++;

        rc = agw_json_parse_value(ps, child, &val);
        if (rc != AGW_JSON_OK) {
            return rc;
        }

        if (name && ps->nodes) {
            if (tail) {
                ps->nodes[tail].link = name;
            } else {
                head = name;
            }

            tail = name;
        }

        agw_json_skip_ws(ps);

        if (ps->p == ps->end) {
            return AGW_JSON_EINVAL;
        }

        if (*ps->p == ',') {
            ps->p++;
            continue;
        }

        if (*ps->p == '}') {
            ps->p++;
            break;
        }

        return AGW_JSON_EINVAL;
    }

done:

    if (idx && ps->nodes) {
        ps->nodes[idx].len = agw_json_members(ps, head);
    }

    ps->depth--;
    *out = idx;

    return AGW_JSON_OK;
}


static int
agw_json_parse_array(agw_json_parse_t *ps, unsigned role, uint32_t *out)
{
    int       rc;
    uint32_t  idx, elt, tail;
    unsigned  child;

    if (++ps->depth > AGW_JSON_MAX_DEPTH) {
        return AGW_JSON_EDEPTH;
    }

    switch (role) {
    case AGW_R_PROMPT:
        child = AGW_R_TEXT;
        break;
    case AGW_R_MESSAGES:
        child = AGW_R_MESSAGE;
        break;
    case AGW_R_CONTENT:
        child = AGW_R_PART;
        break;
    default:
        child = AGW_R_NONE;
    }

    idx = agw_json_node_new(ps);
    ps->p++;
    tail = 0;

    agw_json_skip_ws(ps);

    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        goto done;
    }

    for ( ;; ) {
        rc = agw_json_parse_value(ps, child, &elt);
        if (rc != AGW_JSON_OK) {
            return rc;
        }

        if (elt && ps->nodes) {
            if (tail) {
                ps->nodes[tail].link = elt;
            } else {
                ps->nodes[idx].len = elt;
            }

            tail = elt;
        }

        agw_json_skip_ws(ps);

        if (ps->p == ps->end) {
            return AGW_JSON_EINVAL;
        }

        if (*ps->p == ',') {
            ps->p++;
            continue;
        }

        if (*ps->p == ']') {
            ps->p++;
            break;
        }

        return AGW_JSON_EINVAL;
    }

done:

    ps->depth--;
    *out = idx;

    return AGW_JSON_OK;
}


static int
agw_json_parse_literal(agw_json_parse_t *ps, unsigned role, uint32_t *out)
{
    size_t          n;
    uint32_t        idx;
    const char     *lit;
    const uint8_t  *p;

    p = ps->p;

    switch (*p) {
    case 't':
        lit = "true";
        break;
    case 'f':
        lit = "false";
        break;
    default:
        lit = "null";
    }

    n = strlen(lit);

    if ((size_t) (ps->end - p) < n || memcmp(p, lit, n) != 0) {
        return AGW_JSON_EINVAL;
    }

    idx = agw_json_node_new(ps);
    if (idx) {
        ps->nodes[idx].len = (uint32_t) n;
    }

    *out = idx;

    if (ps->req && *p != 'n') {
        if (role == AGW_R_STREAM) {
            ps->req->stream = (*p == 't');

        } else if (role == AGW_R_INCLUDE_USAGE) {
            ps->req->include_usage = (*p == 't');
        }
    }

    ps->p += n;

    return AGW_JSON_OK;
}


static int
agw_json_parse_value(agw_json_parse_t *ps, unsigned role, uint32_t *out)
{
    int  esc;

    agw_json_skip_ws(ps);

    *out = 0;

    if (ps->p == ps->end) {
        return AGW_JSON_EINVAL;
    }

    switch (*ps->p) {

    case '{':
        return agw_json_parse_object(ps, role, out);

    case '[':
        return agw_json_parse_array(ps, role, out);

    case '"':
        return agw_json_parse_string(ps, role, out, &esc);

    case 't':
    case 'f':
    case 'n':
        return agw_json_parse_literal(ps, role, out);

    default:
        return agw_json_parse_number(ps, role, out);
    }
}


static int
agw_json_parse(agw_json_parse_t *ps, const uint8_t *in, size_t len,
    agw_json_request_t *req, uint32_t *root)
{
    int  rc;

    ps->start = in;
    ps->p = in;
    ps->end = in + len;
    ps->req = req;

    if (req) {
        memset(req, 0, sizeof(agw_json_request_t));
    }

    if (len >= AGW_JSON_ESC_BIT) {
        return AGW_JSON_ERANGE;
    }

    rc = agw_json_parse_value(ps, AGW_R_TOP, root);

    if (rc == AGW_JSON_OK) {
        agw_json_skip_ws(ps);

        if (ps->p != ps->end) {
            rc = AGW_JSON_EINVAL;
        }
    }

    if (rc != AGW_JSON_OK) {
        if (req) {
            memset(req, 0, sizeof(agw_json_request_t));
        }

        return rc;
    }

    if (req) {
        req->valid = 1;

        if (ps->has_max_completion) {
            req->max_tokens = ps->max_completion;
            req->has_max_tokens = 1;

        } else if (ps->has_max_tokens) {
            req->max_tokens = ps->max_tokens;
            req->has_max_tokens = 1;
        }
    }

    return ps->err;
}


/* output */


static void
agw_json_flush(agw_json_out_t *o)
{
    if (o->n && o->rc == AGW_JSON_OK) {
        if (o->write(o->ctx, o->buf, o->n) != 0) {
            o->rc = AGW_JSON_ESTOP;
        }
    }

    o->n = 0;
}


static void
agw_json_put(agw_json_out_t *o, const uint8_t *p, size_t n)
{
    if (n > sizeof(o->buf) - o->n) {
        agw_json_flush(o);

        if (n >= sizeof(o->buf) / 2) {
            if (o->rc == AGW_JSON_OK && o->write(o->ctx, p, n) != 0) {
                o->rc = AGW_JSON_ESTOP;
            }

            return;
        }
    }

    memcpy(o->buf + o->n, p, n);
    o->n += n;
}


static void
agw_json_put1(agw_json_out_t *o, uint8_t c)
{
    if (o->n == sizeof(o->buf)) {
        agw_json_flush(o);
    }

    o->buf[o->n++] = c;
}


static void
agw_json_emit_string(agw_json_out_t *o, const agw_json_node_t *nd)
{
    size_t          n;
    uint32_t        cp;
    uint8_t         esc[8];
    const uint8_t  *p, *r, *e;

    static const char  hex[] = "0123456789abcdef";

    p = o->in + nd->start;

    if ((nd->len & AGW_JSON_ESC_BIT) == 0) {
        agw_json_put(o, p, nd->len);
        return;
    }

    e = p + (nd->len & ~AGW_JSON_ESC_BIT) - 1;
    p++;
    r = p;

    agw_json_put1(o, '"');

    for ( ;; ) {
        p = memchr(p, '\\', (size_t) (e - p));
        if (p == NULL) {
            p = e;
            break;
        }

        agw_json_put(o, r, (size_t) (p - r));
        p += agw_json_escape(p, e, &cp);
        r = p;

        if (cp >= 0x20 && cp != '"' && cp != '\\') {
            agw_json_put(o, esc, agw_json_utf8_put(esc, cp));
            continue;
        }

        esc[0] = '\\';
        n = 2;

        switch (cp) {
        case '"':  esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case 0x08: esc[1] = 'b'; break;
        case 0x0c: esc[1] = 'f'; break;
        case 0x0a: esc[1] = 'n'; break;
        case 0x0d: esc[1] = 'r'; break;
        case 0x09: esc[1] = 't'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = (uint8_t) hex[cp >> 4];
            esc[5] = (uint8_t) hex[cp & 0xf];
            n = 6;
        }

        agw_json_put(o, esc, n);
    }

    agw_json_put(o, r, (size_t) (p - r));
    agw_json_put1(o, '"');
}


/* see the essay: D, D with zeros, or DeE, from the digits */

static void
agw_json_emit_number(agw_json_out_t *o, const agw_json_node_t *nd)
{
    int             eneg;
    size_t          ilen, flen, len;
    int64_t         exp, e;
    uint8_t         tmp[24], *t;
    const uint8_t  *p, *end, *ip, *fp;

    p = o->in + nd->start;
    end = p + nd->len;

    if (*p == '-') {
        p++;
    }

    ip = p;

    while (p < end && *p >= '0' && *p <= '9') {
        p++;
    }

    ilen = (size_t) (p - ip);
    fp = p;
    flen = 0;

    if (p < end && *p == '.') {
        fp = ++p;

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }

        flen = (size_t) (p - fp);
    }

    exp = 0;

    if (p < end) {                       /* 'e' or 'E' */
        p++;
        eneg = (*p == '-');

        if (*p == '-' || *p == '+') {
            p++;
        }

        while (p < end) {
            exp = exp * 10 + (*p++ - '0');   /* <= 9 digits: checked */
        }

        if (eneg) {
            exp = -exp;
        }
    }

    /* value = D * 10^e, D = ip[0..ilen) fp[0..flen) */

    e = exp - (int64_t) flen;

    while (ilen && *ip == '0') {
        ip++;
        ilen--;
    }

    if (ilen == 0) {
        while (flen && *fp == '0') {
            fp++;
            flen--;
        }
    }

    while (flen && fp[flen - 1] == '0') {
        flen--;
        e++;
    }

    if (flen == 0) {
        while (ilen && ip[ilen - 1] == '0') {
            ilen--;
            e++;
        }
    }

    len = ilen + flen;

    if (len == 0) {
        agw_json_put1(o, '0');
        return;
    }

    if (o->in[nd->start] == '-') {
        agw_json_put1(o, '-');
    }

    agw_json_put(o, ip, ilen);
    agw_json_put(o, fp, flen);

    if (e == 0) {
        return;
    }

    if (e > 0 && e <= 20) {
        while (e--) {
            agw_json_put1(o, '0');
        }

        return;
    }

    t = tmp + sizeof(tmp);
    eneg = (e < 0);

    if (eneg) {
        e = -e;
    }

    do {
        *--t = (uint8_t) ('0' + e % 10);
        e /= 10;
    } while (e);

    if (eneg) {
        *--t = '-';
    }

    *--t = 'e';

    agw_json_put(o, t, (size_t) (tmp + sizeof(tmp) - t));
}


static void
agw_json_emit_value(agw_json_out_t *o, uint32_t idx)
{
    uint32_t                m;
    const agw_json_node_t  *nd;

    nd = &o->nodes[idx];

    switch (o->in[nd->start]) {

    case '{':
        agw_json_put1(o, '{');

        for (m = nd->len; m; m = o->nodes[m].link) {
            if (m != nd->len) {
                agw_json_put1(o, ',');
            }

            agw_json_emit_string(o, &o->nodes[m]);
            agw_json_put1(o, ':');
            agw_json_emit_value(o, m + 1);
        }

        agw_json_put1(o, '}');
        return;

    case '[':
        agw_json_put1(o, '[');

        for (m = nd->len; m; m = o->nodes[m].link) {
            if (m != nd->len) {
                agw_json_put1(o, ',');
            }

            agw_json_emit_value(o, m);
        }

        agw_json_put1(o, ']');
        return;

    case '"':
        agw_json_emit_string(o, nd);
        return;

    case 't':
    case 'f':
    case 'n':
        agw_json_put(o, o->in + nd->start, nd->len);
        return;

    default:
        agw_json_emit_number(o, nd);
    }
}


size_t
agw_json_scratch_size(size_t len)
{
    /*
     * every value but the first follows a byte of its own ('[', '{', ','
     * or ':') and takes at least one: at most len / 2 + 1 nodes, plus the
     * unused node 0
     */

    return (len / 2 + 3) * sizeof(agw_json_node_t);
}


int
agw_json_canonical(const uint8_t *in, size_t len,
    const agw_json_str_t *ignore, size_t nignore,
    void *scratch, size_t scratch_len,
    agw_json_write_pt write, void *ctx, agw_json_request_t *req)
{
    int               rc;
    uint32_t          root;
    agw_json_out_t    o;
    agw_json_parse_t  ps;

    memset(&ps, 0, sizeof(agw_json_parse_t));

    ps.ignore = ignore;
    ps.nignore = nignore;

    if (scratch_len / sizeof(agw_json_node_t) < 2) {
        ps.err = AGW_JSON_ENOMEM;

    } else {
        ps.nodes = scratch;
        ps.cap = scratch_len / sizeof(agw_json_node_t) > UINT32_MAX
                 ? UINT32_MAX
                 : (uint32_t) (scratch_len / sizeof(agw_json_node_t));
        ps.nnodes = 1;                   /* 0 means "none" in links */
    }

    rc = agw_json_parse(&ps, in, len, req, &root);
    if (rc != AGW_JSON_OK) {
        return rc;
    }

    o.in = in;
    o.nodes = scratch;
    o.write = write;
    o.ctx = ctx;
    o.rc = AGW_JSON_OK;
    o.n = 0;

    agw_json_emit_value(&o, root);
    agw_json_flush(&o);

    return o.rc;
}


int
agw_json_scan_request(const uint8_t *in, size_t len, agw_json_request_t *req)
{
    int               rc;
    uint32_t          root;
    agw_json_parse_t  ps;

    memset(&ps, 0, sizeof(agw_json_parse_t));

    rc = agw_json_parse(&ps, in, len, req, &root);

    return req->valid ? AGW_JSON_OK : rc;
}


int
agw_json_buf_write(void *ctx, const uint8_t *data, size_t len)
{
    agw_json_buf_t  *b;

    b = ctx;

    if ((size_t) (b->end - b->pos) < len) {
        return -1;
    }

    memcpy(b->pos, data, len);
    b->pos += len;

    return 0;
}


ptrdiff_t
agw_json_unescape(const uint8_t *in, size_t len, uint8_t *out,
    size_t out_len)
{
    size_t          n, k;
    uint32_t        cp;
    const uint8_t  *p, *end;

    p = in;
    end = in + len;
    k = 0;

    while (p < end) {
        if (*p == '\\') {
            n = agw_json_escape(p, end, &cp);

        } else if (*p < 0x20 || *p == '"') {
            return -1;

        } else {
            n = agw_json_utf8(p, end, &cp);
        }

        if (n == 0 || out_len - k < agw_json_utf8_len(cp)) {
            return -1;
        }

        k += agw_json_utf8_put(out + k, cp);
        p += n;
    }

    return (ptrdiff_t) k;
}


/* the push tokenizer */


enum {
    AGW_P_VALUE = 0,                     /* a value */
    AGW_P_VALUE_OR_CLOSE,                /* after '[' */
    AGW_P_KEY_OR_CLOSE,                  /* after '{' */
    AGW_P_KEY,                           /* after ',' in an object */
    AGW_P_COLON,
    AGW_P_AFTER,                         /* ',' or the container's close */
    AGW_P_STRING,
    AGW_P_ESCAPE,                        /* after '\' */
    AGW_P_HEX,                           /* in \uXXXX, sub digits read */
    AGW_P_NUMBER,                        /* sub: number state */
    AGW_P_LITERAL,                       /* sub: letters matched */
    AGW_P_DONE                           /* only whitespace may follow */
};

/* number states; the accepting ones are ZERO, INT, FRAC and EXP */
enum {
    AGW_N_MINUS = 0,
    AGW_N_ZERO,
    AGW_N_INT,
    AGW_N_DOT,
    AGW_N_FRAC,
    AGW_N_E,
    AGW_N_ESIGN,
    AGW_N_EXP
};


void
agw_json_push_init(agw_json_push_t *j, agw_json_event_pt handler, void *ctx)
{
    memset(j, 0, sizeof(agw_json_push_t));

    j->handler = handler;
    j->ctx = ctx;
    j->state = AGW_P_VALUE;
}


static void
agw_json_push_emit(agw_json_push_t *j, unsigned type)
{
    agw_json_event_t  ev;

    ev.type = type;
    ev.depth = j->depth;
    ev.text = j->text;
    ev.text_len = j->text_len;
    ev.full_len = j->full_len;

    if (j->handler && j->handler(j->ctx, &ev) != 0) {
        j->rc = AGW_JSON_ESTOP;
    }
}


static void
agw_json_push_text(agw_json_push_t *j, uint32_t cp)
{
    size_t  n;

    n = agw_json_utf8_len(cp);

    if (j->text_len + n <= AGW_JSON_TEXT_MAX) {
        agw_json_utf8_put(j->text + j->text_len, cp);
        j->text_len += n;
    }

    j->full_len += n;
}


static void
agw_json_push_value_done(agw_json_push_t *j)
{
    j->state = j->depth ? AGW_P_AFTER : AGW_P_DONE;
}


static int
agw_json_push_open(agw_json_push_t *j, int object)
{
    if (j->depth == AGW_JSON_MAX_DEPTH) {
        return AGW_JSON_EDEPTH;
    }

    agw_json_push_emit(j, object ? AGW_JSON_OBJECT : AGW_JSON_ARRAY);

    if (object) {
        j->stack |= (uint64_t) 1 << j->depth;
    } else {
        j->stack &= ~((uint64_t) 1 << j->depth);
    }

    j->depth++;
    j->state = object ? AGW_P_KEY_OR_CLOSE : AGW_P_VALUE_OR_CLOSE;

    return AGW_JSON_OK;
}


static int
agw_json_push_close(agw_json_push_t *j, int object)
{
    if (j->depth == 0
        || ((j->stack >> (j->depth - 1)) & 1) != (uint64_t) object)
    {
        return AGW_JSON_EINVAL;
    }

    j->depth--;
    j->text_len = 0;
    j->full_len = 0;
    agw_json_push_emit(j, object ? AGW_JSON_OBJECT_END : AGW_JSON_ARRAY_END);
    agw_json_push_value_done(j);

    return AGW_JSON_OK;
}


/* a value starts with c */

static int
agw_json_push_value(agw_json_push_t *j, uint8_t c)
{
    j->text_len = 0;
    j->full_len = 0;

    switch (c) {

    case '{':
        return agw_json_push_open(j, 1);

    case '[':
        return agw_json_push_open(j, 0);

    case '"':
        j->key = 0;
        j->state = AGW_P_STRING;
        return AGW_JSON_OK;

    case 't':
        j->literal = "true";
        break;

    case 'f':
        j->literal = "false";
        break;

    case 'n':
        j->literal = "null";
        break;

    default:
        if (c == '-') {
            j->sub = AGW_N_MINUS;
        } else if (c == '0') {
            j->sub = AGW_N_ZERO;
        } else if (c >= '1' && c <= '9') {
            j->sub = AGW_N_INT;
        } else {
            return AGW_JSON_EINVAL;
        }

        agw_json_push_text(j, c);
        j->state = AGW_P_NUMBER;
        return AGW_JSON_OK;
    }

    j->sub = 1;
    j->state = AGW_P_LITERAL;

    return AGW_JSON_OK;
}


/* the next number state, or -1 if c ends the number (or is an error) */

static int
agw_json_push_number(unsigned s, uint8_t c)
{
    int  digit;

    digit = (c >= '0' && c <= '9');

    switch (s) {
    case AGW_N_MINUS:
        return c == '0' ? AGW_N_ZERO : digit ? AGW_N_INT : -1;
    case AGW_N_ZERO:
    case AGW_N_INT:
        if (c == '.') {
            return AGW_N_DOT;
        }
        if (c == 'e' || c == 'E') {
            return AGW_N_E;
        }
        return s == AGW_N_INT && digit ? AGW_N_INT : -1;
    case AGW_N_DOT:
    case AGW_N_FRAC:
        if (digit) {
            return AGW_N_FRAC;
        }
        return s == AGW_N_FRAC && (c == 'e' || c == 'E') ? AGW_N_E : -1;
    case AGW_N_E:
        if (c == '+' || c == '-') {
            return AGW_N_ESIGN;
        }
        /* fall through */
    default:                             /* ESIGN, EXP */
        return digit ? AGW_N_EXP : -1;
    }
}


static int
agw_json_push_accepting(unsigned s)
{
    return s == AGW_N_ZERO || s == AGW_N_INT || s == AGW_N_FRAC
           || s == AGW_N_EXP;
}


static int
agw_json_push_ws(uint8_t c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}


static int
agw_json_push_byte(agw_json_push_t *j, uint8_t c)
{
    int       d, n;
    uint32_t  cp;

    switch (j->state) {

    case AGW_P_VALUE_OR_CLOSE:
        if (c == ']') {
            return agw_json_push_close(j, 0);
        }
        /* fall through */

    case AGW_P_VALUE:
        if (agw_json_push_ws(c)) {
            return AGW_JSON_OK;
        }
        return agw_json_push_value(j, c);

    case AGW_P_KEY_OR_CLOSE:
        if (c == '}') {
            return agw_json_push_close(j, 1);
        }
        /* fall through */

    case AGW_P_KEY:
        if (agw_json_push_ws(c)) {
            return AGW_JSON_OK;
        }

        if (c != '"') {
            return AGW_JSON_EINVAL;
        }

        j->text_len = 0;
        j->full_len = 0;
        j->key = 1;
        j->state = AGW_P_STRING;
        return AGW_JSON_OK;

    case AGW_P_COLON:
        if (agw_json_push_ws(c)) {
            return AGW_JSON_OK;
        }

        if (c != ':') {
            return AGW_JSON_EINVAL;
        }

        j->state = AGW_P_VALUE;
        return AGW_JSON_OK;

    case AGW_P_AFTER:
        if (agw_json_push_ws(c)) {
            return AGW_JSON_OK;
        }

        if (c == ',') {
            j->state = ((j->stack >> (j->depth - 1)) & 1) ? AGW_P_KEY
                                                          : AGW_P_VALUE;
            return AGW_JSON_OK;
        }

        if (c == '}' || c == ']') {
            return agw_json_push_close(j, c == '}');
        }

        return AGW_JSON_EINVAL;

    case AGW_P_STRING:
        if (j->hi && c != '\\') {
            return AGW_JSON_EINVAL;      /* a high surrogate alone */
        }

        if (c == '"') {
            if (j->key) {
                agw_json_push_emit(j, AGW_JSON_KEY);
                j->state = AGW_P_COLON;

            } else {
                agw_json_push_emit(j, AGW_JSON_STRING);
                agw_json_push_value_done(j);
            }

            return AGW_JSON_OK;
        }

        if (c == '\\') {
            j->state = AGW_P_ESCAPE;
            return AGW_JSON_OK;
        }

        if (c < 0x20) {
            return AGW_JSON_EINVAL;
        }

        if (j->text_len < AGW_JSON_TEXT_MAX) {
            j->text[j->text_len++] = c;
        }

        j->full_len++;
        return AGW_JSON_OK;

    case AGW_P_ESCAPE:
        if (j->hi && c != 'u') {
            return AGW_JSON_EINVAL;
        }

        j->state = AGW_P_STRING;

        switch (c) {
        case '"':
        case '\\':
        case '/':
            cp = c;
            break;
        case 'b': cp = 0x08; break;
        case 'f': cp = 0x0c; break;
        case 'n': cp = 0x0a; break;
        case 'r': cp = 0x0d; break;
        case 't': cp = 0x09; break;
        case 'u':
            j->state = AGW_P_HEX;
            j->sub = 0;
            j->ucp = 0;
            return AGW_JSON_OK;
        default:
            return AGW_JSON_EINVAL;
        }

        agw_json_push_text(j, cp);
        return AGW_JSON_OK;

    case AGW_P_HEX:
        d = agw_json_hex(c);
        if (d < 0) {
            return AGW_JSON_EINVAL;
        }

        j->ucp = j->ucp << 4 | (uint32_t) d;

        if (++j->sub < 4) {
            return AGW_JSON_OK;
        }

        j->state = AGW_P_STRING;
        cp = j->ucp;

        if (j->hi) {
            if (cp < 0xdc00 || cp > 0xdfff) {
                return AGW_JSON_EINVAL;
            }

            cp = 0x10000 + ((j->hi - 0xd800) << 10) + (cp - 0xdc00);
            j->hi = 0;

        } else if (cp >= 0xd800 && cp <= 0xdbff) {
            j->hi = cp;
            return AGW_JSON_OK;

        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            return AGW_JSON_EINVAL;
        }

        agw_json_push_text(j, cp);
        return AGW_JSON_OK;

    case AGW_P_NUMBER:
        n = agw_json_push_number(j->sub, c);

        if (n >= 0) {
            j->sub = (unsigned) n;
            agw_json_push_text(j, c);
            return AGW_JSON_OK;
        }

        if (!agw_json_push_accepting(j->sub)) {
            return AGW_JSON_EINVAL;
        }

        agw_json_push_emit(j, AGW_JSON_NUMBER);
        agw_json_push_value_done(j);

        if (j->rc != AGW_JSON_OK) {
            return j->rc;
        }

        return agw_json_push_byte(j, c);  /* c belongs to what follows */

    case AGW_P_LITERAL:
        if (c != (uint8_t) j->literal[j->sub]) {
            return AGW_JSON_EINVAL;
        }

        if (j->literal[++j->sub] != '\0') {
            return AGW_JSON_OK;
        }

        agw_json_push_emit(j, j->literal[0] == 't' ? AGW_JSON_TRUE
                              : j->literal[0] == 'f' ? AGW_JSON_FALSE
                              : AGW_JSON_NULL);
        agw_json_push_value_done(j);
        return AGW_JSON_OK;

    default:                             /* AGW_P_DONE */
        return agw_json_push_ws(c) ? AGW_JSON_OK : AGW_JSON_EINVAL;
    }
}


int
agw_json_push_feed(agw_json_push_t *j, const uint8_t *data, size_t len)
{
    int             rc;
    const uint8_t  *p, *end;

    end = data + len;

    for (p = data; p < end && j->rc == AGW_JSON_OK; p++) {

        /* plain string bytes in a run: most of an answer */

        if (j->state == AGW_P_STRING && j->hi == 0) {
            while (p < end && agw_json_str_class[*p] != 1
                   && agw_json_str_class[*p] != 2
                   && agw_json_str_class[*p] != 3)
            {
                if (j->text_len < AGW_JSON_TEXT_MAX) {
                    j->text[j->text_len++] = *p;
                }

                j->full_len++;
                p++;
            }

            if (p == end) {
                break;
            }
        }

        rc = agw_json_push_byte(j, *p);

        if (rc != AGW_JSON_OK && j->rc == AGW_JSON_OK) {
            j->rc = rc;
        }
    }

    return j->rc;
}


int
agw_json_push_finish(agw_json_push_t *j)
{
    if (j->rc != AGW_JSON_OK) {
        return j->rc;
    }

    if (j->state == AGW_P_NUMBER && j->depth == 0
        && agw_json_push_accepting(j->sub))
    {
        agw_json_push_emit(j, AGW_JSON_NUMBER);
        j->state = AGW_P_DONE;
    }

    if (j->rc == AGW_JSON_OK && j->state != AGW_P_DONE) {
        j->rc = AGW_JSON_EINVAL;
    }

    return j->rc;
}
