"""Keys that match what the model sees (SPEC 7.3, issue 14): with
ai_gateway_cache_key_json on, the same chat request sent by an OpenAI SDK
and by curl, members reordered, whitespace and escapes aside, is one entry;
a different prompt, a value of another type or a reordered array is not;
fields in ai_gateway_cache_key_ignore never split the key; bodies nginx
spools to a temp file are canonicalised too; what is not canonical JSON is
keyed by its bytes, as with key_json off."""

import json
import os
import shutil
import subprocess

import pytest
import requests

from harness.nginx import Nginx

HTTP = """
    ai_gateway_cache_zone zone=main:1m max_entry_size=64k;
    upstream sim {{ server 127.0.0.1:{sim}; keepalive 8; }}
    server {{
        listen 127.0.0.1:%%PORT%%;
        client_body_buffer_size 1k;
        client_max_body_size 4m;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location = /cachez {{ ai_gateway_cachez; }}

        location /v1/ {{
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_authorized on;
            ai_gateway_cache_key_json on;
            ai_gateway_cache_key_ignore user metadata;
            ai_gateway_cache_max_body 64k;
            proxy_pass http://sim;
        }}

        # the same, keyed by the body's bytes
        location /bytes/ {{
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_authorized on;
            proxy_pass http://sim/;
        }}

        # an origin inside this nginx: answers any body with a 200
        location /echo/ {{
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_key_json on;
            ai_gateway_cache_authorized on;
            ai_gateway_cache_key_ignore user;
            ai_gateway_cache_max_body 8k;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}
        location /raw/ {{ return 200 "answer"; }}

        # one key text, one zone: a body keyed by its canonical form and
        # one keyed by its bytes (issue 21, item 16)
        location = /domain/json {{
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_key_json on;
            ai_gateway_cache_authorized on;
            ai_gateway_cache_key $request_method/domain;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}
        location = /domain/bytes {{
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_authorized on;
            ai_gateway_cache_key $request_method/domain;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}
    }}
"""

API_KEY = "sk-test-json-keys"
CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hello, caf\u00e9!"}]
NODE_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "build",
                        "node")


def start(nginx_factory, sim):
    return nginx_factory(HTTP.format(sim=sim.port))


def post(n, path, body, headers=None):
    """body: bytes sent as they are, or an object json.dumps'd"""
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    h = {"Content-Type": "application/json",
         "Authorization": "Bearer " + API_KEY}
    h.update(headers or {})
    r = requests.post(n.url + path, data=body, headers=h, timeout=10)
    assert r.status_code == 200, r.text
    return r


def python_sdk_bytes(model, messages, **extra):
    """What openai-python 1.x sends for chat.completions.create(): the body
    built as {"messages", "model", ...} in that order, encoded by httpx
    with json.dumps' defaults (", " and ": ", non-ASCII escaped)."""
    body = {"messages": messages, "model": model}
    body.update(extra)
    return json.dumps(body).encode()


PYTHON_SDK_HEADERS = {
    "Accept": "application/json",
    "User-Agent": "OpenAI/Python 1.54.0",
    "X-Stainless-Lang": "python",
    "X-Stainless-Package-Version": "1.54.0",
    "X-Stainless-Retry-Count": "0",
}


def node_sdk_bytes(model, messages, **extra):
    """What openai-node sends: JSON.stringify of the params object as the
    caller wrote it, model first, compact, non-ASCII as UTF-8."""
    body = {"model": model, "messages": messages}
    body.update(extra)
    return json.dumps(body, separators=(",", ":"),
                      ensure_ascii=False).encode()


def curl_bytes():
    """A hand-written curl body: members reordered inside every object,
    pretty-printed, escapes where the SDKs write plain characters, and the
    number 1.0 written as 1e0 where the SDK wrote 1"""
    return (b'{\n  "temperature" : 1e0 ,\n  "messages" : [\n'
            b'    { "content" : "You are terse.", "role" : "system" },\n'
            b'    { "content" : "\\u0048ello, caf\\u00e9!", '
            b'"role" : "\\u0075ser" }\n  ],\n'
            b'  "model" : "sim-small"\n}\n')


def test_sdks_and_curl_share_one_entry(nginx_factory, sim):
    n = start(nginx_factory, sim)

    first = post(n, CHAT, python_sdk_bytes("sim-small", MESSAGES,
                                           temperature=1),
                 PYTHON_SDK_HEADERS)
    assert first.headers["X-Cache"] == "MISS"
    seen = sim.requests_seen()

    node = post(n, CHAT, node_sdk_bytes("sim-small", MESSAGES,
                                        temperature=1.0))
    assert node.headers["X-Cache"] == "HIT"
    assert node.content == first.content

    curl = post(n, CHAT, curl_bytes())
    assert curl.headers["X-Cache"] == "HIT"
    assert curl.content == first.content
    assert sim.requests_seen() == seen

    # the same bytes where they are keyed as bytes: three entries
    for body in (python_sdk_bytes("sim-small", MESSAGES, temperature=1),
                 node_sdk_bytes("sim-small", MESSAGES, temperature=1.0),
                 curl_bytes()):
        assert post(n, "/bytes" + CHAT, body).headers["X-Cache"] == "MISS"


def test_different_requests_miss(nginx_factory, sim):
    n = start(nginx_factory, sim)
    base = {"model": "sim-small", "messages": MESSAGES, "n": 1}
    assert post(n, CHAT, base).headers["X-Cache"] == "MISS"
    assert post(n, CHAT, base).headers["X-Cache"] == "HIT"

    other_prompt = dict(base, messages=[MESSAGES[0],
                                        {"role": "user", "content": "Bye"}])
    assert post(n, CHAT, other_prompt).headers["X-Cache"] == "MISS"

    # a number is not the string of its digits
    assert post(n, CHAT, dict(base, n="1")).headers["X-Cache"] == "MISS"

    # arrays keep their order
    swapped = dict(base, messages=list(reversed(MESSAGES)))
    assert post(n, CHAT, swapped).headers["X-Cache"] == "MISS"

    # another model
    assert post(n, CHAT, dict(base, model="sim-large")) \
        .headers["X-Cache"] == "MISS"

    # another credential never meets this one's answer
    assert post(n, CHAT, base, {"Authorization": "Bearer sk-other"}) \
        .headers["X-Cache"] == "MISS"


def test_ignored_fields_do_not_split_the_key(nginx_factory, sim):
    n = start(nginx_factory, sim)
    base = {"model": "sim-small", "messages": MESSAGES}
    assert post(n, CHAT, dict(base, user="alice")).headers["X-Cache"] == "MISS"
    seen = sim.requests_seen()

    for body in (dict(base, user="bob"), base,
                 dict(base, metadata={"trace": "42"}),
                 dict(base, user="carol", metadata={"a": [1, 2]})):
        assert post(n, CHAT, body).headers["X-Cache"] == "HIT", body
    assert sim.requests_seen() == seen

    # a field that is not ignored does split it; ignoring is top-level only
    assert post(n, CHAT, dict(base, seed=7)).headers["X-Cache"] == "MISS"
    nested = {"model": "sim-small",
              "messages": [dict(MESSAGES[1], user="x")]}
    assert post(n, CHAT, nested).headers["X-Cache"] == "MISS"
    nested["messages"][0]["user"] = "y"
    assert post(n, CHAT, nested).headers["X-Cache"] == "MISS"


def test_spooled_bodies_are_canonicalised(nginx_factory, sim):
    """client_body_buffer_size 1k: a 4 KiB body is written to a temp file,
    and still keyed in canonical form (from the copy the body filter
    keeps, never read back from the file)"""
    n = start(nginx_factory, sim)
    text = "lorem ipsum " * 400
    body = {"model": "sim-small", "max_tokens": 4,
            "messages": [{"role": "user", "content": text}]}
    compact = json.dumps(body, separators=(",", ":")).encode()
    pretty = json.dumps(dict(reversed(list(body.items()))),
                        indent=4).encode()
    assert len(compact) > 4096 and len(pretty) > 4096

    assert post(n, CHAT, compact).headers["X-Cache"] == "MISS"
    assert post(n, CHAT, pretty).headers["X-Cache"] == "HIT"

    # chunked, in pieces: the same
    def pieces():
        for i in range(0, len(pretty), 700):
            yield pretty[i:i + 700]

    r = requests.post(n.url + CHAT, data=pieces(), timeout=10,
                      headers={"Content-Type": "application/json",
                               "Authorization": "Bearer " + API_KEY})
    assert r.status_code == 200
    assert r.headers["X-Cache"] == "HIT"

    # two large prompts that differ only at the end
    body["messages"][0]["content"] = text + "!"
    assert post(n, CHAT, body).headers["X-Cache"] == "MISS"


def test_what_is_not_canonical_json_is_keyed_by_bytes(nginx_factory, sim):
    n = start(nginx_factory, sim)
    cases = [
        b'{"a":1,"a":2}',                       # a repeated member
        b'{"a":1,}',                            # not JSON
        b'[' * 100 + b']' * 100,                # deeper than 64
        b'{"a":"\\ud800"}',                     # a lone surrogate
    ]
    for body in cases:
        assert post(n, "/echo/x", body).headers["X-Cache"] == "MISS", body
        assert post(n, "/echo/x", body).headers["X-Cache"] == "HIT", body
        # the same with a space more is another entry: bytes, not meaning
        assert post(n, "/echo/x", b" " + body).headers["X-Cache"] == "MISS"

    # valid JSON: whitespace and order never matter, ignored fields neither
    assert post(n, "/echo/y", b'{"b":[1,2],"a":"x","user":"u1"}') \
        .headers["X-Cache"] == "MISS"
    assert post(n, "/echo/y", b' { "a" : "\\u0078" , "b" : [ 1.0 , 2 ] } ') \
        .headers["X-Cache"] == "HIT"

    # a value every two bytes: more than the first scratch the module
    # tries holds (sized for real requests), so it takes the worst-case one
    dense = ",".join(["1"] * 2000)
    assert post(n, "/echo/d", ('{"b":[%s],"a":0}' % dense).encode()) \
        .headers["X-Cache"] == "MISS"
    assert post(n, "/echo/d", ('{"a":0.0, "b":[%s]}' % dense).encode()) \
        .headers["X-Cache"] == "HIT"

    # above ai_gateway_cache_max_body: bypassed, never keyed on a part
    big = json.dumps({"a": "x" * 9000}).encode()
    assert post(n, "/echo/z", big).headers.get("X-Cache") == "BYPASS"


def test_bytes_and_canonical_forms_never_share_a_key(nginx_factory, sim):
    """The digest of a body keyed by its bytes and that of one keyed by its
    canonical form are apart (a one-byte tag, agw-key-v4): bytes that
    happen to be another body's canonical form are another entry."""
    n = start(nginx_factory, sim)
    canonical = b'{"a":1,"b":2}'
    assert post(n, "/domain/bytes", canonical).headers["X-Cache"] == "MISS"
    assert post(n, "/domain/bytes", canonical).headers["X-Cache"] == "HIT"
    # canonicalises to those very bytes; before: a HIT on the bytes' entry
    assert post(n, "/domain/json", b'{ "b": 2, "a": 1.0 }') \
        .headers["X-Cache"] == "MISS"
    assert post(n, "/domain/json", canonical).headers["X-Cache"] == "HIT"
    assert post(n, "/domain/bytes", canonical).headers["X-Cache"] == "HIT"

    # a canonical form is a fixed point: a number whose canonical exponent
    # would need ten digits is not canonicalised (keyed by its bytes), so
    # it never meets the bytes of its would-be form either; before, the
    # form "1e-1000000000" of 0.1e-999999999 was keyed like those bytes
    assert post(n, "/echo/e", b"0.1e-999999999").headers["X-Cache"] == "MISS"
    assert post(n, "/echo/e", b"1e-1000000000").headers["X-Cache"] == "MISS"
    assert post(n, "/echo/e", b"0.1e-999999999").headers["X-Cache"] == "HIT"
    # while a long exponent whose form fits is canonical
    assert post(n, "/echo/f", b"0.1e1000000000").headers["X-Cache"] == "MISS"
    assert post(n, "/echo/f", b"1e999999999").headers["X-Cache"] == "HIT"


def test_key_ignore_config_errors(nginx_factory, sim):
    for directive, message in (
            ("ai_gateway_cache_key_ignore user user;",
             'field "user" is listed twice in "ai_gateway_cache_key_ignore"'),
            ('ai_gateway_cache_key_ignore "";',
             'empty field name in "ai_gateway_cache_key_ignore"'),
            ("ai_gateway_cache_key_json maybe;",
             '"ai_gateway_cache_key_json" directive')):
        n = nginx_factory("""
            ai_gateway_cache_zone zone=main:1m;
            server {
                listen 127.0.0.1:%%PORT%%;
                location / { ai_gateway_cache main; """ + directive + """ }
            }""", start=False)
        rc, out = n.test_config()
        assert rc != 0
        assert message in out, out


NODE_SCRIPT = r"""
const OpenAI = require('openai');
const [apiKey, baseURL, messages] = process.argv.slice(-3);
const client = new OpenAI({apiKey, baseURL, maxRetries: 0});
(async () => {
  const out = [];
  for (const user of ['alice', 'bob']) {
    const {data, response} = await client.chat.completions.create({
      model: 'sim-small', user: user, temperature: 1,
      messages: JSON.parse(messages),
    }).withResponse();
    out.push({cache: response.headers.get('x-cache'),
              content: data.choices[0].message.content});
  }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def node_openai():
    """openai-node installed under build/node (npm install --prefix
    build/node openai), or None"""
    node = shutil.which("node")
    modules = os.path.abspath(os.path.join(NODE_DIR, "node_modules"))
    if node is None or not os.path.isdir(os.path.join(modules, "openai")):
        return None
    return node, modules


@pytest.mark.skipif(node_openai() is None,
                    reason="openai-node is not installed in build/node")
def test_the_node_sdk_and_curl_share_one_entry(nginx_factory, sim):
    """the real OpenAI Node client: its two requests (ignored `user`
    aside, the same) and a curl body in another order are one entry"""
    node, modules = node_openai()
    n = start(nginx_factory, sim)

    curl = post(n, CHAT, curl_bytes())
    assert curl.headers["X-Cache"] == "MISS"

    env = dict(os.environ, NODE_PATH=modules)
    out = subprocess.run([node, "-e", NODE_SCRIPT, API_KEY, n.url + "/v1",
                          json.dumps(MESSAGES)],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    answers = json.loads(out.stdout)
    assert [a["cache"] for a in answers] == ["HIT", "HIT"]
    content = curl.json()["choices"][0]["message"]["content"]
    assert all(a["content"] == content for a in answers)
