"""Traffic while something happens: a few client threads keep requesting
one URL and record every answer, so a test can reload nginx (or stop a
backend) underneath and then assert that no request failed."""

import threading
import time

import requests


def during(url, action, threads=4, settle=0.3):
    """Run `action()` while `threads` clients request `url` in a loop.
    Returns (statuses, failures): the X-Cache header of every answer, and
    every non-200 status or error.  A keepalive connection closed by an
    old worker is retried once on a fresh one, as real clients do."""
    stop = threading.Event()
    statuses, failures = [], []

    def one(session):
        r = session.get(url, timeout=5)
        statuses.append(r.headers.get("X-Cache"))
        if r.status_code != 200:
            failures.append(r.status_code)

    def client():
        s = requests.Session()
        while not stop.is_set():
            try:
                one(s)
            except requests.RequestException:
                s = requests.Session()
                try:
                    one(s)
                except requests.RequestException as e:
                    failures.append(repr(e))

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for t in workers:
        t.start()
    try:
        time.sleep(settle)
        action()
        time.sleep(settle)
    finally:
        stop.set()
        for t in workers:
            t.join()
    return statuses, failures
