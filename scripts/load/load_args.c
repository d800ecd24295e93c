/*
 * agw-load: the command line.
 */

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"


static void
load_usage(FILE *f)
{
    fprintf(f,
"usage: agw-load [options] URL [URL...]\n"
"\n"
"Streamed chat completions (POST, JSON body) against URL, connection i\n"
"to URL i mod N.  The report (JSON) goes to stdout or --json FILE;\n"
"progress lines (all-open, first-done, released) go to stderr.\n"
"\n"
"Load:\n"
"  -c, --connections C   concurrent connections (default 10)\n"
"  -n, --requests N      requests in all (default C); each connection\n"
"                        runs its requests one after another, keep-alive\n"
"      --hold            one request per connection, all N at once (-c is\n"
"                        set to N): \"all-open\" on stderr once every one\n"
"                        has its response headers (or failed)\n"
"      --hold-pause      with --hold: stop reading each body after its\n"
"                        headers until released (SIGUSR1 or --hold-ms)\n"
"      --hold-ms MS      release MS after all-open (default: on SIGUSR1)\n"
"      --connect-rate R  open at most R new connections a second\n"
"      --rate R          start at most R requests a second in all\n"
"      --duration S      start no request after S seconds\n"
"      --timeout S       a connection idle this long fails (default 60)\n"
"      --source A[,B..]  local addresses to connect from, round robin, for\n"
"                        more than one address's worth of ports\n"
"\n"
"Bodies (a chat completion per request unless --body):\n"
"      --body FILE       send FILE as the body of every request\n"
"      --prompts KIND    distinct (default), identical, prefix\n"
"      --groups K        identical: K prompts, request i asks i mod K (1)\n"
"      --tenants T       prefix: T tenants (default 8)\n"
"      --prefix-tokens P prefix: each tenant's system prompt (default 2000)\n"
"      --zipf S          prefix: tenants drawn Zipf(S) (default 0: uniform)\n"
"      --user-tokens U   words of the user turn (default 16, at most 256)\n"
"      --max-tokens M    max_tokens (default 40)\n"
"      --mix M:W[,M:W]   max_tokens classes by weight, e.g. 16:80,512:20;\n"
"                        latencies reported per class\n"
"      --model NAME      (default sim-small)\n"
"      --usage           stream_options.include_usage\n"
"      --no-stream       \"stream\":false\n"
"      --salt S          put S in every prompt (fresh prompts per run)\n"
"      --seed N          (default 1)\n"
"\n"
"Headers:\n"
"  -H 'Name: value'      add a request header; {i} the request number,\n"
"                        {u} the virtual user (connection mod --users),\n"
"                        {t} the tenant\n"
"      --users U         virtual users for {u} (default: connections)\n"
"      --record NAME     count this response header's values too\n"
"                        (X-Cache and X-Server-Id always)\n"
"\n"
"Output:\n"
"      --json FILE       the report (default stdout)\n"
"      --csv FILE        one line per request\n"
"      --label TEXT      copied into the report\n");
}


static int
load_parse_double(const char *s, double min, double max, double *out)
{
    char    *end;
    double   v;

    errno = 0;
    v = strtod(s, &end);

    if (errno != 0 || end == s || *end != '\0' || !isfinite(v)
        || v < min || v > max)
    {
        return -1;
    }

    *out = v;

    return 0;
}


static int
load_parse_uint(const char *s, unsigned long long min, unsigned long long max,
    unsigned long long *out)
{
    char                *end;
    unsigned long long   v;

    if (*s < '0' || *s > '9') {
        return -1;
    }

    errno = 0;
    v = strtoull(s, &end, 10);

    if (errno != 0 || *end != '\0' || v < min || v > max) {
        return -1;
    }

    *out = v;

    return 0;
}


/* http://HOST[:PORT][/PATH]; nothing else (no TLS, no user info) */
static int
load_parse_url(const char *url, load_target_t *t)
{
    const char         *host, *path, *query;
    struct evhttp_uri  *u;
    size_t              len;

    u = evhttp_uri_parse(url);
    if (u == NULL) {
        return -1;
    }

    host = evhttp_uri_get_host(u);

    if (evhttp_uri_get_scheme(u) == NULL
        || strcmp(evhttp_uri_get_scheme(u), "http") != 0
        || host == NULL || *host == '\0')
    {
        evhttp_uri_free(u);
        return -1;
    }

    t->host = strdup(host);
    t->port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 80;

    path = evhttp_uri_get_path(u);
    query = evhttp_uri_get_query(u);
    if (path == NULL || *path == '\0') {
        path = "/";
    }

    len = strlen(path) + (query ? strlen(query) + 1 : 0) + 1;
    t->path = malloc(len);
    t->authority = malloc(strlen(host) + 8);

    if (t->host == NULL || t->path == NULL || t->authority == NULL) {
        evhttp_uri_free(u);
        return -1;
    }

    snprintf(t->path, len, "%s%s%s", path, query ? "?" : "",
             query ? query : "");
    sprintf(t->authority, "%s:%d", host, t->port);

    evhttp_uri_free(u);

    return 0;
}


/* M:W[,M:W...] */
static int
load_parse_mix(const char *s, load_conf_t *conf)
{
    char      *end;
    double     w, sum;
    unsigned   k;
    long       m;

    conf->nclasses = 0;
    sum = 0;

    while (*s != '\0') {
        if (conf->nclasses == LOAD_MAX_CLASSES) {
            return -1;
        }

        m = strtol(s, &end, 10);
        if (end == s || *end != ':' || m < 1 || m > 100000) {
            return -1;
        }

        s = end + 1;
        w = strtod(s, &end);
        if (end == s || !(w > 0) || (*end != ',' && *end != '\0')) {
            return -1;
        }

        conf->classes[conf->nclasses].max_tokens = (unsigned) m;
        conf->classes[conf->nclasses].weight = w;
        conf->nclasses++;
        sum += w;
        s = (*end == ',') ? end + 1 : end;
    }

    if (conf->nclasses == 0) {
        return -1;
    }

    w = 0;

    for (k = 0; k < conf->nclasses; k++) {
        w += conf->classes[k].weight / sum;
        conf->classes[k].cdf = w;
    }

    conf->classes[conf->nclasses - 1].cdf = 1.0;

    return 0;
}


static int
load_parse_header(const char *s, load_conf_t *conf)
{
    char           *colon;
    load_header_t  *h;

    if (conf->nheaders == LOAD_MAX_HEADERS) {
        return -1;
    }

    colon = strchr(s, ':');
    if (colon == NULL || colon == s) {
        return -1;
    }

    h = &conf->headers[conf->nheaders];
    h->name = strndup(s, (size_t) (colon - s));

    for (colon++; *colon == ' ' || *colon == '\t'; colon++) { /* void */ }

    h->value = strdup(colon);

    if (h->name == NULL || h->value == NULL || strlen(h->value) > 400) {
        return -1;
    }

    h->templated = (strstr(h->value, "{i}") != NULL
                    || strstr(h->value, "{u}") != NULL
                    || strstr(h->value, "{t}") != NULL);
    conf->nheaders++;

    return 0;
}


static int
load_parse_sources(char *s, load_conf_t *conf)
{
    char  *tok, *save;

    for (tok = strtok_r(s, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save))
    {
        if (conf->nsources == LOAD_MAX_SOURCES) {
            return -1;
        }

        conf->sources[conf->nsources++] = tok;
    }

    return conf->nsources ? 0 : -1;
}


/* the salt goes into JSON strings as it is */
static int
load_plain(const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\' || (unsigned char) *s < 0x20) {
            return 0;
        }
    }

    return 1;
}


int
load_parse_args(int argc, char **argv, load_conf_t *conf)
{
    int                  c, idx;
    double               d;
    unsigned long long   u;
    int                  requests_set, users_set;

    static const struct option  opts[] = {
        { "connections", required_argument, NULL, 'c' },
        { "requests", required_argument, NULL, 'n' },
        { "hold", no_argument, NULL, 'O' },
        { "hold-pause", no_argument, NULL, 'P' },
        { "hold-ms", required_argument, NULL, 'W' },
        { "connect-rate", required_argument, NULL, 'C' },
        { "rate", required_argument, NULL, 'r' },
        { "duration", required_argument, NULL, 'd' },
        { "timeout", required_argument, NULL, 't' },
        { "source", required_argument, NULL, 'S' },
        { "body", required_argument, NULL, 'b' },
        { "prompts", required_argument, NULL, 'p' },
        { "groups", required_argument, NULL, 'g' },
        { "tenants", required_argument, NULL, 'T' },
        { "prefix-tokens", required_argument, NULL, 'x' },
        { "zipf", required_argument, NULL, 'z' },
        { "user-tokens", required_argument, NULL, 'U' },
        { "max-tokens", required_argument, NULL, 'm' },
        { "mix", required_argument, NULL, 'M' },
        { "model", required_argument, NULL, 'o' },
        { "usage", no_argument, NULL, 'u' },
        { "no-stream", no_argument, NULL, 'N' },
        { "salt", required_argument, NULL, 's' },
        { "seed", required_argument, NULL, 'e' },
        { "header", required_argument, NULL, 'H' },
        { "users", required_argument, NULL, 'V' },
        { "record", required_argument, NULL, 'R' },
        { "json", required_argument, NULL, 'j' },
        { "csv", required_argument, NULL, 'v' },
        { "label", required_argument, NULL, 'l' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };

    conf->connections = 10;
    conf->timeout = 60;
    conf->hold_ms = -1;
    conf->groups = 1;
    conf->tenants = 8;
    conf->prefix_tokens = 2000;
    conf->user_tokens = 16;
    conf->max_tokens = 40;
    conf->model = "sim-small";
    conf->salt = "";
    conf->seed = 1;
    conf->stream = 1;
    conf->recorded[conf->nrecorded++] = "X-Cache";
    conf->recorded[conf->nrecorded++] = "X-Server-Id";
    requests_set = users_set = 0;

    while ((c = getopt_long(argc, argv, "c:n:H:h", opts, &idx)) != -1) {
        switch (c) {

#define LOAD_UINT(field, min, max, what)                                    \
            if (load_parse_uint(optarg, (min), (max), &u) != 0) {           \
                fprintf(stderr, "agw-load: invalid %s \"%s\"\n", what,      \
                        optarg);                                            \
                return -1;                                                  \
            }                                                               \
            field = u;                                                      \
            break;

#define LOAD_DOUBLE(field, min, max, what)                                  \
            if (load_parse_double(optarg, (min), (max), &d) != 0) {         \
                fprintf(stderr, "agw-load: invalid %s \"%s\"\n", what,      \
                        optarg);                                            \
                return -1;                                                  \
            }                                                               \
            field = d;                                                      \
            break;

        case 'c':
            LOAD_UINT(conf->connections, 1, 1000000, "--connections")
        case 'n':
            requests_set = 1;
            LOAD_UINT(conf->requests, 1, 100000000, "--requests")
        case 'O':
            conf->hold = 1;
            break;
        case 'P':
            conf->hold_pause = 1;
            break;
        case 'W':
            LOAD_DOUBLE(conf->hold_ms, 0, 86400000, "--hold-ms")
        case 'C':
            LOAD_DOUBLE(conf->connect_rate, 0.001, 1e9, "--connect-rate")
        case 'r':
            LOAD_DOUBLE(conf->rate, 0.001, 1e9, "--rate")
        case 'd':
            LOAD_DOUBLE(conf->duration, 0.001, 86400, "--duration")
        case 't':
            LOAD_DOUBLE(conf->timeout, 0.001, 86400, "--timeout")
        case 'S':
            if (load_parse_sources(optarg, conf) != 0) {
                fprintf(stderr, "agw-load: invalid --source \"%s\"\n",
                        optarg);
                return -1;
            }
            break;
        case 'b':
            conf->body_file = optarg;
            break;
        case 'p':
            if (strcmp(optarg, "distinct") == 0) {
                conf->prompts = LOAD_PROMPTS_DISTINCT;
            } else if (strcmp(optarg, "identical") == 0) {
                conf->prompts = LOAD_PROMPTS_IDENTICAL;
            } else if (strcmp(optarg, "prefix") == 0) {
                conf->prompts = LOAD_PROMPTS_PREFIX;
            } else {
                fprintf(stderr, "agw-load: --prompts is distinct, identical "
                        "or prefix, not \"%s\"\n", optarg);
                return -1;
            }
            break;
        case 'g':
            LOAD_UINT(conf->groups, 1, 100000000, "--groups")
        case 'T':
            LOAD_UINT(conf->tenants, 1, 65535, "--tenants")
        case 'x':
            LOAD_UINT(conf->prefix_tokens, 0, 1000000, "--prefix-tokens")
        case 'z':
            LOAD_DOUBLE(conf->zipf, 0, 10, "--zipf")
        case 'U':
            LOAD_UINT(conf->user_tokens, 0, 256, "--user-tokens")
        case 'm':
            LOAD_UINT(conf->max_tokens, 1, 100000, "--max-tokens")
        case 'M':
            if (load_parse_mix(optarg, conf) != 0) {
                fprintf(stderr, "agw-load: invalid --mix \"%s\" (M:W,... "
                        "with at most %d classes)\n", optarg,
                        LOAD_MAX_CLASSES);
                return -1;
            }
            break;
        case 'o':
            conf->model = optarg;
            if (!load_plain(optarg)) {
                fprintf(stderr, "agw-load: invalid --model\n");
                return -1;
            }
            break;
        case 'u':
            conf->usage = 1;
            break;
        case 'N':
            conf->stream = 0;
            break;
        case 's':
            conf->salt = optarg;
            if (!load_plain(optarg) || strlen(optarg) > 32) {
                fprintf(stderr, "agw-load: --salt: at most 32 characters, "
                        "no quote, backslash or control character\n");
                return -1;
            }
            break;
        case 'e':
            LOAD_UINT(conf->seed, 0, UINT64_MAX, "--seed")
        case 'H':
            if (load_parse_header(optarg, conf) != 0) {
                fprintf(stderr, "agw-load: invalid -H \"%s\"\n", optarg);
                return -1;
            }
            break;
        case 'V':
            users_set = 1;
            LOAD_UINT(conf->users, 1, 100000000, "--users")
        case 'R':
            if (conf->nrecorded == LOAD_MAX_RECORDED) {
                fprintf(stderr, "agw-load: at most %d --record\n",
                        LOAD_MAX_RECORDED - 2);
                return -1;
            }
            conf->recorded[conf->nrecorded++] = optarg;
            break;
        case 'j':
            conf->json_path = optarg;
            break;
        case 'v':
            conf->csv_path = optarg;
            break;
        case 'l':
            conf->label = optarg;
            break;
        case 'h':
            load_usage(stdout);
            exit(0);
        default:
            load_usage(stderr);
            return -1;

#undef LOAD_UINT
#undef LOAD_DOUBLE
        }
    }

    if (optind == argc) {
        load_usage(stderr);
        return -1;
    }

    for (; optind < argc; optind++) {
        if (conf->ntargets == LOAD_MAX_TARGETS) {
            fprintf(stderr, "agw-load: at most %d URLs\n", LOAD_MAX_TARGETS);
            return -1;
        }

        if (load_parse_url(argv[optind], &conf->targets[conf->ntargets])
            != 0)
        {
            fprintf(stderr, "agw-load: not an http:// URL: \"%s\"\n",
                    argv[optind]);
            return -1;
        }

        conf->ntargets++;
    }

    if (conf->hold) {
        /* one request per connection: -n and -c say the same */
        if (requests_set) {
            conf->connections = (unsigned) conf->requests;
        }

        conf->requests = conf->connections;

    } else if (!requests_set) {
        conf->requests = conf->connections;
    }

    if (conf->hold_pause && !conf->hold) {
        fprintf(stderr, "agw-load: --hold-pause needs --hold\n");
        return -1;
    }

    if (conf->body_file != NULL && conf->nclasses) {
        fprintf(stderr, "agw-load: --mix needs generated bodies, not "
                "--body\n");
        return -1;
    }

    if (!users_set) {
        conf->users = conf->connections;
    }

    return 0;
}


void
load_conf_free(load_conf_t *conf)
{
    unsigned  i;

    for (i = 0; i < conf->ntargets; i++) {
        free(conf->targets[i].host);
        free(conf->targets[i].path);
        free(conf->targets[i].authority);
    }

    for (i = 0; i < conf->nheaders; i++) {
        free(conf->headers[i].name);
        free(conf->headers[i].value);
    }
}
