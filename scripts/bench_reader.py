#!/usr/bin/python3
"""What reading an answer's usage costs, in instructions per answer
(callgrind), for answers of the sizes and shapes inference servers send:
an 8-token chat (make bench's), a 500-token one, the same with logprobs
(each token's, with three alternatives: what "logprobs": true,
"top_logprobs": 3 asks for), and the 500 tokens streamed (one event a
token, then the usage), each fed to lib/agw_usage.c's reader in 4 KB
pieces (a stream's with the memo the module gives it); and what the
request scan costs a request body (make bench's chat, and one with a
2 KB system prompt).  Built with the module's flags (-O2) from the lib/ of this tree,
or of another one to compare with (--lib).

    scripts/bench_reader.py [--lib DIR] [--reps 20]
"""

import argparse
import json
import os
import random
import subprocess
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ("the of and to in is you that it he was for on are as with his "
         "they at be this from").split()


def answers(dirname):
    """{name: (mode, path)} of the answers, written to dirname."""
    rnd = random.Random(1)
    out = {}

    def chat(tokens, logprobs=False):
        toks = [rnd.choice(WORDS) for _ in range(tokens)]
        a = {"id": "chatcmpl-b0de94c403e1317b", "object": "chat.completion",
             "created": 1796647344, "model": "meta-llama/Llama-3.1-8B-Instruct",
             "choices": [{"index": 0, "message": {
                 "role": "assistant", "content": " ".join(toks)},
                 "logprobs": None, "finish_reason": "length"}],
             "usage": {"prompt_tokens": 812, "completion_tokens": tokens,
                       "total_tokens": 812 + tokens}}
        if logprobs:
            a["choices"][0]["logprobs"] = {"content": [
                {"token": t, "logprob": -0.1234,
                 "bytes": list(t.encode()),
                 "top_logprobs": [{"token": w, "logprob": -1.5,
                                   "bytes": list(w.encode())}
                                  for w in rnd.sample(WORDS, 3)]}
                for t in toks]}
        return json.dumps(a), toks

    def write(name, mode, text):
        path = os.path.join(dirname, name)
        with open(path, "w") as f:
            f.write(text)
        out[name] = (mode, path)

    write("chat, 8 tokens", "json", chat(8)[0])
    text, toks = chat(500)
    write("chat, 500 tokens", "json", text)
    write("chat, 500 tokens with logprobs", "json", chat(500, True)[0])
    head = {"id": "chatcmpl-b0de94c403e1317b",
            "object": "chat.completion.chunk", "created": 1796647344,
            "model": "meta-llama/Llama-3.1-8B-Instruct"}
    events = []
    for t in toks:
        events.append(dict(head, choices=[{"index": 0, "delta": {
            "content": t + " "}, "logprobs": None, "finish_reason": None}],
            usage=None))
    events.append(dict(head, choices=[], usage={
        "prompt_tokens": 812, "completion_tokens": 500,
        "total_tokens": 1312}))
    write("stream, 500 tokens", "sse",
          "".join("data: %s\n\n" % json.dumps(e) for e in events)
          + "data: [DONE]\n\n")

    # request bodies, through the request scan (the model, the prompt's
    # size, max_tokens): make bench's chat, and one with a 2 KB system
    # prompt (bench-balance's shape)
    user = {"role": "user", "content": "what measuring costs"}
    write("request: make bench's chat", "request", json.dumps(
        {"model": "sim-small", "max_tokens": 8, "messages": [user]},
        separators=(",", ":")))
    system = ("You are a careful assistant. Answer briefly. " * 46)[:2048]
    write("request: a 2 KB system prompt", "request", json.dumps(
        {"model": "sim-small", "max_tokens": 8, "messages": [
            {"role": "system", "content": system}, user]},
        separators=(",", ":")))
    return out


def instructions(binary, mode, path, reps):
    def run(n):
        p = subprocess.run(["valgrind", "--tool=callgrind",
                            "--callgrind-out-file=/dev/null", binary, mode,
                            path, str(n)], capture_output=True, text=True,
                           check=True)
        line = [x for x in p.stderr.splitlines() if "Collected" in x][0]
        return int(line.split()[-1].replace(",", ""))
    return (run(reps) - run(0)) / reps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=os.path.join(
        REPO, "ngx_ai_gateway_module", "lib"))
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    lib = os.path.abspath(args.lib)
    with tempfile.TemporaryDirectory(prefix="agw-bench-reader-") as d:
        binary = os.path.join(d, "bench_reader")
        srcs = sorted(os.path.join(lib, f) for f in os.listdir(lib)
                      if f.endswith(".c"))
        subprocess.run(["cc", "-O2", "-I", lib, "-o", binary,
                        os.path.join(REPO, "scripts", "reader",
                                     "bench_reader.c")] + srcs
                       + ["-lcrypto", "-lz"], check=True)
        print("| answer or request | bytes | instructions each |")
        print("| --- | ---: | ---: |")
        for name, (mode, path) in answers(d).items():
            print("| %s | %d | %.0f |" % (
                name, os.path.getsize(path),
                instructions(binary, mode, path, args.reps)), flush=True)


if __name__ == "__main__":
    main()
