
/*
 * The strict scanner: one pass over a whole JSON text.
 *
 * It checks that the input is exactly one RFC 8259 value and refuses
 * anything else: a raw control in a string, a bad escape, a lone
 * surrogate, bytes that are not UTF-8 as RFC 3629 defines it (see
 * agw_json.c), leading zeros, a number without digits after its '.' or
 * 'e', trailing commas, trailing garbage, and nesting deeper than
 * AGW_JSON_MAX_DEPTH.  A number whose canonical form would need an
 * exponent of more than nine digits, valid JSON, is ERANGE: its canonical
 * form would not read back as itself.
 *
 * As it goes, the same pass reads the request facts: each value carries a
 * role (agw_json_request.c) that says what it means to the request, and
 * the values with one are handed over as they end.
 *
 * Given a scratch array, it also records every value as a 12-byte node (a
 * "tape"): where it starts, its length, and a link to the next sibling in
 * output order.  When an object closes, its members' list goes to the
 * members handler, which puts it in output order (agw_json_canonical.c
 * sorts it and finds duplicates) before anything is written.  A tape that
 * runs out is ENOMEM, never an overrun, and the pass goes on without it
 * to read the request; so do EDUP and ERANGE, which are valid JSON.
 *
 * The pass is recursive, one frame per container, so the depth limit
 * bounds the stack too.
 */


#include <string.h>

#include "agw_json_scan.h"


static int agw_json_scan_value(agw_json_scan_t *ps, unsigned role,
    uint32_t *out);


static void
agw_json_skip_ws(agw_json_scan_t *ps)
{
    const uint8_t  *p;

    for (p = ps->p; p < ps->end; p++) {
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
            break;
        }
    }

    ps->p = p;
}


static uint32_t
agw_json_node_new(agw_json_scan_t *ps)
{
    agw_json_node_t  *n;

    if (ps->nodes == NULL) {
        return 0;
    }

    if (ps->nnodes == ps->cap) {
        ps->nodes = NULL;                /* the scan goes on for req */
        ps->err = AGW_JSON_ENOMEM;
        return 0;
    }

    n = &ps->nodes[ps->nnodes];
    n->start = (uint32_t) (ps->p - ps->start);
    n->len = 0;
    n->link = 0;

    return ps->nnodes++;
}


static int
agw_json_scan_string(agw_json_scan_t *ps, unsigned role, uint32_t *out,
    int *escaped)
{
    size_t           n;
    uint32_t         cp, idx;
    uint64_t         saved;
    const uint8_t   *q, *end;
#if (AGW_JSON_WORDS)
    uint64_t         w, m;
#endif

    idx = agw_json_node_new(ps);
    end = ps->end;
    q = ps->p + 1;
    saved = 0;
    *escaped = 0;

    for ( ;; ) {

#if (AGW_JSON_WORDS)
        /* plain ASCII eight bytes at a time: not special, not high */

        while (end - q >= 8) {
            memcpy(&w, q, 8);
            m = agw_json_word_specials(w) | (w & AGW_JSON_HIGHS);

            if (m) {
                q += __builtin_ctzll(m) >> 3;
                break;
            }

            q += 8;
        }
#endif

        while (q < end && agw_json_byte_class[*q] == AGW_JSON_BYTE_PLAIN) {
            q++;
        }

        if (q == end) {
            return AGW_JSON_EINVAL;
        }

        switch (agw_json_byte_class[*q]) {

        case AGW_JSON_BYTE_QUOTE:
            goto done;

        case AGW_JSON_BYTE_BACKSLASH:
            n = agw_json_escape(q, end, &cp);
            if (n == 0) {
                return AGW_JSON_EINVAL;
            }

            saved += n - agw_json_utf8_len(cp);
            *escaped = 1;
            q += n;
            break;

        case AGW_JSON_BYTE_CONTROL:
            return AGW_JSON_EINVAL;

        default:                         /* AGW_JSON_BYTE_HIGH */
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

    if (role != AGW_JSON_ROLE_NONE && ps->request.req) {
        agw_json_request_string(&ps->request, role, ps->p + 1,
                                (size_t) (q - ps->p) - 2,
                                (uint64_t) (q - ps->p) - 2 - saved,
                                *escaped);
    }

    *out = idx;
    ps->p = q;

    return AGW_JSON_OK;
}


/*
 * The decimal exponent the canonical form writes for a number (see
 * agw_json_canonical.c): the input's exponent, less the fraction digits,
 * plus the trailing zeros of all the digits; 1 and *e set, or 0 for zero
 * (written "0", no exponent).  exp is the input's exponent, already known
 * to fit.
 */

static int
agw_json_canonical_exponent(const uint8_t *ip, size_t ilen, const uint8_t *fp,
    size_t flen, int64_t exp, int64_t *e)
{
    size_t  tz, n;

    tz = 0;

    for (n = flen; n && fp[n - 1] == '0'; n--) {
        tz++;
    }

    if (n == 0) {
        for (n = ilen; n && ip[n - 1] == '0'; n--) {
            tz++;
        }

        if (n == 0) {
            return 0;
        }
    }

    *e = exp - (int64_t) flen + (int64_t) tz;

    return 1;
}


static int
agw_json_scan_number(agw_json_scan_t *ps, unsigned role, uint32_t *out)
{
    int             plain, neg, eneg;
    size_t          sig, ilen, flen;
    int64_t         exp, e;
    uint32_t        idx;
    const uint8_t  *p, *end, *digits, *frac, *edigits;

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

    ilen = (size_t) (p - digits);
    frac = p;
    flen = 0;

    if (p < end && *p == '.') {
        plain = 0;
        frac = ++p;

        if (p == end || *p < '0' || *p > '9') {
            return AGW_JSON_EINVAL;
        }

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }

        flen = (size_t) (p - frac);
    }

    sig = 0;
    eneg = 0;
    edigits = p;

    if (p < end && (*p == 'e' || *p == 'E')) {
        plain = 0;
        p++;

        if (p < end && (*p == '+' || *p == '-')) {
            eneg = (*p == '-');
            p++;
        }

        if (p == end || *p < '0' || *p > '9') {
            return AGW_JSON_EINVAL;
        }

        while (p < end && *p == '0') {
            p++;
        }

        edigits = p;

        for (sig = 0; p < end && *p >= '0' && *p <= '9'; sig++) {
            p++;
        }
    }

    /*
     * ERANGE when the canonical form would write an exponent of more than
     * nine digits: reading that form again would be ERANGE, so the form
     * would not be a fixed point.  An input exponent of more than ten
     * digits always is one (the digits, under 2 GiB, cannot bring it
     * back), unless the number is zero; a plain integer only with a
     * billion trailing zeros.
     */

    if (ps->err == AGW_JSON_OK && (!plain || ilen > 999999999)) {

        exp = 0;

        if (sig <= 10) {
            while (edigits < p) {
                exp = exp * 10 + (*edigits++ - '0');
            }

            if (eneg) {
                exp = -exp;
            }

        } else {
            exp = eneg ? -10000000000LL : 10000000000LL;
        }

        if (agw_json_canonical_exponent(digits, ilen, frac, flen, exp, &e)
            && (e > 999999999 || e < -999999999))
        {
            ps->err = AGW_JSON_ERANGE;
        }
    }

    idx = agw_json_node_new(ps);
    if (idx) {
        ps->nodes[idx].len = (uint32_t) (p - ps->p);
    }

    *out = idx;

    if (role != AGW_JSON_ROLE_NONE && ps->request.req) {
        agw_json_request_number(&ps->request, role, digits, p,
                                plain && !neg);
    }

    ps->p = p;

    return AGW_JSON_OK;
}


static int
agw_json_scan_object(agw_json_scan_t *ps, unsigned role, uint32_t *out)
{
    int             rc, esc;
    uint32_t        idx, name, val, head, tail;
    unsigned        child;
    const uint8_t  *ns;

    if (++ps->depth > AGW_JSON_MAX_DEPTH) {
        return AGW_JSON_EDEPTH;
    }

    if (role != AGW_JSON_ROLE_NONE && ps->request.req) {
        role = agw_json_request_object(role);
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

        rc = agw_json_scan_string(ps, AGW_JSON_ROLE_NONE, &name, &esc);
        if (rc != AGW_JSON_OK) {
            return rc;
        }

        child = AGW_JSON_ROLE_NONE;

        if (role != AGW_JSON_ROLE_NONE && ps->request.req) {
            child = agw_json_request_member(&ps->request, role, ns + 1,
                                            (size_t) (ps->p - ns) - 2, esc);
        }

        agw_json_skip_ws(ps);

        if (ps->p == ps->end || *ps->p != ':') {
            return AGW_JSON_EINVAL;
        }

        ps->p++;

        rc = agw_json_scan_value(ps, child, &val);
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
        ps->nodes[idx].len = ps->members(ps, head);
    }

    ps->depth--;
    *out = idx;

    return AGW_JSON_OK;
}


static int
agw_json_scan_array(agw_json_scan_t *ps, unsigned role, uint32_t *out)
{
    int       rc;
    uint32_t  idx, elt, tail;
    unsigned  child;

    if (++ps->depth > AGW_JSON_MAX_DEPTH) {
        return AGW_JSON_EDEPTH;
    }

    child = AGW_JSON_ROLE_NONE;

    if (role != AGW_JSON_ROLE_NONE && ps->request.req) {
        child = agw_json_request_element(role);
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
        rc = agw_json_scan_value(ps, child, &elt);
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
agw_json_scan_literal(agw_json_scan_t *ps, unsigned role, uint32_t *out)
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

    if (role != AGW_JSON_ROLE_NONE && ps->request.req && *p != 'n') {
        agw_json_request_boolean(&ps->request, role, *p == 't');
    }

    ps->p += n;

    return AGW_JSON_OK;
}


static int
agw_json_scan_value(agw_json_scan_t *ps, unsigned role, uint32_t *out)
{
    int             rc, esc;
    const uint8_t  *start;

    agw_json_skip_ws(ps);

    *out = 0;

    if (ps->p == ps->end) {
        return AGW_JSON_EINVAL;
    }

    start = ps->p;

    switch (*ps->p) {

    case '{':
        rc = agw_json_scan_object(ps, role, out);
        break;

    case '[':
        rc = agw_json_scan_array(ps, role, out);
        break;

    case '"':
        rc = agw_json_scan_string(ps, role, out, &esc);
        break;

    case 't':
    case 'f':
    case 'n':
        rc = agw_json_scan_literal(ps, role, out);
        break;

    default:
        rc = agw_json_scan_number(ps, role, out);
    }

    /* a value that counts by its size, as written */

    if (role == AGW_JSON_ROLE_RAW && rc == AGW_JSON_OK && ps->request.req) {
        agw_json_request_raw(&ps->request, (size_t) (ps->p - start));
    }

    return rc;
}


int
agw_json_scan(agw_json_scan_t *ps, const uint8_t *in, size_t len,
    agw_json_request_t *req, uint32_t *root)
{
    int  rc;

    ps->start = in;
    ps->p = in;
    ps->end = in + len;

    agw_json_request_start(&ps->request, req, len);

    if (len >= AGW_JSON_ESC_BIT) {
        return AGW_JSON_ERANGE;
    }

    rc = agw_json_scan_value(ps, AGW_JSON_ROLE_TOP, root);

    if (rc == AGW_JSON_OK) {
        agw_json_skip_ws(ps);

        if (ps->p != ps->end) {
            rc = AGW_JSON_EINVAL;
        }
    }

    agw_json_request_finish(&ps->request, rc == AGW_JSON_OK);

    if (rc != AGW_JSON_OK) {
        return rc;
    }

    return ps->err;
}


int
agw_json_scan_request(const uint8_t *in, size_t len, agw_json_request_t *req)
{
    int              rc;
    uint32_t         root;
    agw_json_scan_t  ps;

    memset(&ps, 0, sizeof(agw_json_scan_t));

    rc = agw_json_scan(&ps, in, len, req, &root);

    return req->valid ? AGW_JSON_OK : rc;
}
