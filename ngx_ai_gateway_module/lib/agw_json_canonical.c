
/*
 * The canonical form: JSON for cache keys.
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
 * same bytes (see "What this guarantees" below).
 *
 * Numbers are never converted to double: a double would merge 1e400 with
 * 1e401 (both infinity) and 10000000000000001 with 10000000000000000.  The
 * canonical number is computed from the digits: the integer and fraction
 * digits make one digit string D with a decimal exponent E; leading zeros
 * of D and trailing zeros (moved into E) are dropped; zero, negative zero
 * included, is "0".  It is written as D when E is 0, as D followed by E
 * zeros when E is 1 to 20, and as "DeE" otherwise: 1.0, 1 and 10e-1 are
 * "1", 1E2 is "100", 1.5 is "15e-1", 1e21 is "1e21", 1e400 is "1e400".
 * A number whose E would need more than nine digits is ERANGE, not
 * rounded: the scanner computes E from the digits as it reads them, so
 * 1e999999999 is canonical but 0.1e-999999999 (E = -1000000000) and
 * 10e999999999 are not, while 0.1e1000000000 is (E = 999999999) and so is
 * a zero with any exponent ("0").
 *
 * What this guarantees: a text is canonicalisable, or not, as a whole;
 * its canonical form is JSON that canonicalises again to the very same
 * bytes (a fixed point: canonical(canonical(x)) == canonical(x) for every
 * x that canonicalises, which the unit tests and the fuzzer check), and
 * two texts share a canonical form only if they are the same JSON value
 * by the rules above.  Within those rules it promises nothing about
 * meaning: 1 and 1.0 are one value here, as RFC 8259 allows, even if some
 * upstream tells them apart.  The cache digests a canonical form and raw
 * bytes in separate domains (agw_key.h), so a body keyed by its bytes
 * never meets one keyed by its canonical form.
 *
 * What is not canonicalisable returns an error and writes nothing, and the
 * caller keys by the raw bytes: anything the scanner rejects (see
 * agw_json_scan.c: not RFC 8259, not UTF-8, nesting deeper than
 * AGW_JSON_MAX_DEPTH), and an object that repeats a member name: parsers
 * disagree about which duplicate wins, so two bodies with the same
 * canonical form could mean different things to the upstream.
 *
 * The canonicaliser reads its input twice.  The first pass, the scanner's,
 * validates it and records every value on a tape in the caller's scratch.
 * When an object closes, agw_json_members() below merge-sorts its
 * members' list in place through the tape's links (names without escapes
 * compare with one memcmp), so duplicates are adjacent and are found
 * before anything is written.  The second pass walks the tape and writes
 * the output through a 1 KiB buffer; strings without escapes are copied as
 * they are.  Both passes are linear apart from the sort.
 */


#include <string.h>

#include "agw_json_canonical.h"
#include "agw_json_scan.h"


typedef struct {
    const agw_json_str_t   *ignore;      /* top-level names left out */
    size_t                  nignore;
} agw_json_canonical_t;


typedef struct {
    const uint8_t          *in;
    const agw_json_node_t  *nodes;
    agw_json_write_pt       write;
    void                   *ctx;
    int                     rc;
    size_t                  n;
    uint8_t                 buf[1024];
} agw_json_out_t;


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


/*
 * Stable merge sort of a linked list of name nodes (S. Tatham's bottom-up
 * list merge sort): O(n log n) with no memory beyond the links.
 */

static uint32_t
agw_json_sort(agw_json_scan_t *ps, uint32_t list)
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
agw_json_members(agw_json_scan_t *ps, uint32_t list)
{
    size_t                 i;
    uint32_t               m, prev, head;
    agw_json_node_t       *nd;
    agw_json_canonical_t  *cn;

    nd = ps->nodes;
    cn = ps->data;
    list = agw_json_sort(ps, list);

    for (m = list; m && nd[m].link; m = nd[m].link) {
        if (agw_json_name_cmp(ps->start, &nd[m], &nd[nd[m].link]) == 0) {
            if (ps->err == AGW_JSON_OK) {
                ps->err = AGW_JSON_EDUP;
            }

            break;
        }
    }

    if (ps->depth != 1 || cn->nignore == 0) {
        return list;
    }

    head = list;
    prev = 0;

    for (m = list; m; m = nd[m].link) {
        for (i = 0; i < cn->nignore; i++) {
            if (agw_json_name_is(ps->start, &nd[m], cn->ignore[i].data,
                                 cn->ignore[i].len))
            {
                break;
            }
        }

        if (i == cn->nignore) {
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

        /*
         * at most ten significant digits unless the number is zero (the
         * scanner's ERANGE): the cap only keeps a zero's long exponent
         * from overflowing
         */
        while (p < end) {
            if (exp < 100000000000LL) {
                exp = exp * 10 + (*p - '0');
            }

            p++;
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
    int                   rc;
    uint32_t              root;
    agw_json_out_t        o;
    agw_json_scan_t       ps;
    agw_json_canonical_t  cn;

    memset(&ps, 0, sizeof(agw_json_scan_t));

    cn.ignore = ignore;
    cn.nignore = nignore;
    ps.members = agw_json_members;
    ps.data = &cn;

    if (scratch_len / sizeof(agw_json_node_t) < 2) {
        ps.err = AGW_JSON_ENOMEM;

    } else {
        ps.nodes = scratch;
        ps.cap = scratch_len / sizeof(agw_json_node_t) > UINT32_MAX
                 ? UINT32_MAX
                 : (uint32_t) (scratch_len / sizeof(agw_json_node_t));
        ps.nnodes = 1;                   /* 0 means "none" in links */
    }

    rc = agw_json_scan(&ps, in, len, req, &root);
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
