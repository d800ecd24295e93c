"""The answer reader skims what it does not follow (lib/agw_tokens.c,
AGW_JSON_SKIP): the values of keys on no usage or content path, and a JSON
answer's "choices", are followed to their end without being read.  What a
user relies on, with an upstream that answers what the test says:

- an answer's usage counts wherever it stands, whatever the size and shape
  of what comes before it (logprobs, tool calls, nested objects);
- a "usage" anywhere else (inside a skimmed value, a string, a message) is
  never taken for the answer's: a hostile upstream cannot move the figures
  with it;
- what is skimmed is not checked: an answer or a stream event broken only
  there still gives its usage and its content (the reader reads figures
  out of answers; it does not validate them).
"""
import json

import pytest
import requests

from harness.scripted import Answer, Scripted, sse, stream
from test_metrics import cachez, parse, total, wait_requests

HTTP = """
    upstream scripted {{ server 127.0.0.1:{port}; }}
    server {{
        listen 127.0.0.1:%%PORT%%;
        location = /cachez {{ ai_gateway_cachez; }}
        location /v1/ {{
            proxy_buffering off;
            proxy_pass http://scripted;
        }}
    }}
"""

TOKENS = "gen_ai_client_token_usage"


@pytest.fixture
def gateway(nginx_factory):
    up = Scripted().start()
    n = nginx_factory(HTTP.format(port=up.port))
    n.up = up
    yield n
    up.stop()


def json_answer(text):
    data = text.encode()
    return Answer(200, {"Content-Type": "application/json"}, [(0, data)],
                  length=len(data))


def ask(n, model, stream_it=False):
    body = {"model": model, "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi"}]}
    if stream_it:
        body["stream"] = True
    r = requests.post(n.url + "/v1/chat/completions", json=body, timeout=10)
    assert r.status_code == 200, r.text
    return r


def usage_of(n, model, count):
    """(input, output) token sums the metrics counted for model."""
    s = parse(wait_requests(n, count))
    m = cachez(n)["models"][model]
    got = (total(s, TOKENS + "_sum", gen_ai_request_model=model,
                 gen_ai_token_type="input"),
           total(s, TOKENS + "_sum", gen_ai_request_model=model,
                 gen_ai_token_type="output"))
    assert got == (m["tokens_input"], m["tokens_output"])
    return got


def test_usage_after_logprobs_and_tool_calls_counts(gateway):
    logprobs = {"content": [
        {"token": "t%d" % i, "logprob": -0.5, "bytes": [116, 48 + i % 10],
         "top_logprobs": [{"token": "u", "logprob": -1.5, "bytes": [117]}]}
        for i in range(400)]}
    answer = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {
            "role": "assistant", "content": "x " * 400,
            "tool_calls": [{"id": "c", "type": "function", "function": {
                "name": "f", "arguments": json.dumps({"usage": 1})}}]},
            "logprobs": logprobs, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 400,
                  "total_tokens": 411,
                  "completion_tokens_details": {"reasoning_tokens": 0}},
        "system_fingerprint": None}
    gateway.up.script = lambda path, body: json_answer(json.dumps(answer))

    ask(gateway, "m")

    assert usage_of(gateway, "m", 1) == (11, 400)


def test_a_usage_anywhere_else_is_not_the_answers(gateway):
    """usage inside values the reader skims (an extension object, a
    choice, the text), before and after the real one"""
    fake = {"prompt_tokens": 9999, "completion_tokens": 9999,
            "total_tokens": 19998}
    text = json.dumps({
        "id": "x", "metadata": {"usage": fake, "nested": [{"usage": fake}]},
        "choices": [{"index": 0, "usage": fake, "message": {
            "role": "assistant", "content": json.dumps({"usage": fake})}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2,
                  "total_tokens": 5},
        "extra": {"usage": fake}})
    gateway.up.script = lambda path, body: json_answer(text)

    ask(gateway, "m")

    assert usage_of(gateway, "m", 1) == (3, 2)


def test_an_answer_broken_only_where_skimmed_still_counts(gateway):
    """a raw control byte and a leading zero inside "choices": JSON no
    longer, but the reader never reads there"""
    text = ('{"id":"x","choices":[{"index":01,"message":{"role":"assistant",'
            '"content":"a\x01b"}}],"usage":{"prompt_tokens":4,'
            '"completion_tokens":6,"total_tokens":10}}')
    gateway.up.script = lambda path, body: json_answer(text)

    ask(gateway, "m")

    assert usage_of(gateway, "m", 1) == (4, 6)


def test_a_stream_broken_only_where_skimmed_still_counts(gateway):
    """each event's "id" is broken (a bad escape) and its "model" holds a
    fake usage; the content events and the last event's usage count"""
    head = '"id":"bad\\q","object":"chat.completion.chunk","model":' \
           '{"usage":{"prompt_tokens":999,"completion_tokens":999}}'
    events = ['{%s,"choices":[{"index":0,"delta":{"content":"w%d "},'
              '"finish_reason":null}],"usage":null}' % (head, i)
              for i in range(5)]
    events.append('{%s,"choices":[],"usage":{"prompt_tokens":7,'
                  '"completion_tokens":5,"total_tokens":12}}' % head)
    events.append("[DONE]")
    gateway.up.script = lambda path, body: stream((0, sse(*events)))

    ask(gateway, "m", stream_it=True)

    assert usage_of(gateway, "m", 1) == (7, 5)
    # five content events: the time per output token was measured
    s = parse(wait_requests(gateway, 1))
    assert total(s, "gen_ai_server_time_per_output_token_seconds_count",
                 gen_ai_request_model="m") == 1
