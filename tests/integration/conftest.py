"""Fixtures for the integration suite: real ai-sim, nginx (+module) and
redis-server processes on free loopback ports, stopped after each test.

After a test, every nginx it started is checked for [alert]/[emerg]/[crit]
and sanitizer reports (a per-instance `skip_alerts` list whitelists the
expected ones), and its error log is printed if the test failed.
"""

import faulthandler
import os
import sys

import pytest
import requests

sys.path.insert(0, os.path.dirname(__file__))

from harness.nginx import Nginx  # noqa: E402
from harness.redis import RedisCluster, RedisServer, available  # noqa: E402
from harness.sim import Sim  # noqa: E402

FAST_SIM = ("--ttft-ms", "1", "--tpot-ms", "0.2", "--jitter", "0")


# A call without a timeout waits for ever on a server that accepted and
# never answers (a deadlocked worker): give every request one, so such a
# test fails with the request it hung on.  Tests that pass their own keep it.
_session_request = requests.Session.request


def _request_with_timeout(self, method, url, **kwargs):
    if kwargs.get("timeout") is None:
        kwargs["timeout"] = 60
    return _session_request(self, method, url, **kwargs)


requests.Session.request = _request_with_timeout


# A test phase that outlives pytest-timeout (--timeout) ends the run
# with every thread's stack on the real stderr, instead of holding it
# until CI's limit.  pytest-timeout's alarm is one for setup, call and
# teardown together: once it has failed a call, a teardown that hangs
# (a server whose accept() never returns, say) has no alarm left, and
# its report sits in the captured output nobody prints.  faulthandler's
# watchdog is a thread of its own: it prints even when the main thread
# never comes back to Python.
def _phase_limit(config):
    """30 s past pytest-timeout's limit, as the run sets it (--timeout,
    then PYTEST_TIMEOUT, then the ini's timeout; make soak gives 600),
    330 s if none does; None where the run turns timeouts off (0)."""
    sources = (lambda: config.getoption("timeout"),
               lambda: os.environ.get("PYTEST_TIMEOUT"),
               lambda: config.getini("timeout"))
    for source in sources:
        try:
            value = source()
            if value not in (None, ""):
                timeout = float(value)
                return timeout + 30 if timeout > 0 else None
        except (ValueError, KeyError):
            continue
    return 330


def _real_stderr(config):
    try:
        from _pytest.faulthandler import fault_handler_stderr_key
        return config.stash[fault_handler_stderr_key]
    except (ImportError, KeyError):
        return sys.__stderr__


def _watched(item):
    """Armed for one phase; the processes its fixtures started are left
    behind when it goes off (no teardown runs after _exit)."""
    limit = _phase_limit(item.config)
    if limit is None:
        return lambda: None
    faulthandler.dump_traceback_later(limit, exit=True,
                                      file=_real_stderr(item.config))
    return faulthandler.cancel_dump_traceback_later


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    done = _watched(item)
    yield
    done()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    done = _watched(item)
    yield
    done()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    done = _watched(item)
    yield
    done()


# Every failed attempt, kept for the end of the run: with `--reruns` (make
# test, make test-asan) a test that passed on its second try still shows
# what failed on its first, so a flake is seen and can be fixed at its cause.
_failed_attempts = []


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed:
        crash = getattr(rep.longrepr, "reprcrash", None)
        where = "%s:%s" % (crash.path, crash.lineno) if crash else ""
        msg = crash.message if crash else str(rep.longrepr)
        _failed_attempts.append("%s (%s) %s\n    %s" % (
            item.nodeid, rep.when, where, msg[:600].replace("\n", "\n    ")))


def pytest_terminal_summary(terminalreporter):
    if _failed_attempts:
        terminalreporter.section("failed attempts (reruns included)")
        for line in _failed_attempts:
            terminalreporter.write_line(line)


@pytest.fixture
def sim_factory():
    started = []

    def start(sim_id="sim-1", *args, **kwargs):
        s = Sim(None, sim_id, *args, **kwargs)
        s.start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def sim(sim_factory):
    return sim_factory("sim-1", *FAST_SIM)


@pytest.fixture
def sims(sim_factory):
    """The three replicas of SPEC 2.1."""
    return [sim_factory("sim-%d" % i, *FAST_SIM) for i in (1, 2, 3)]


@pytest.fixture
def nginx_factory(request):
    """nginx_factory(http_block, main="", workers=1) -> started Nginx.
    `%%PORT%%` in the block is replaced by the instance's listen port;
    `cls` an Nginx subclass that brings its own config (test_stack)."""
    started = []

    def start(http, start=True, cls=Nginx, **kwargs):
        n = cls(http, **kwargs)
        started.append(n)
        if start:
            n.start()
        return n

    yield start
    failed = getattr(request.node, "rep_call", None)
    failed = failed is not None and failed.failed
    problems = []
    for n in started:
        n.stop()
        if failed:
            sys.stderr.write("---- %s ----\n%s\n" % (n.error_log, n.log()[-20000:]))
        problems += n.alerts()
        n.cleanup(keep=failed)
    assert not problems, "nginx logged:\n" + "\n".join(problems)


@pytest.fixture
def redis_factory():
    """redis_factory(**kwargs) -> a started RedisServer on a free port (no
    persistence), stopped and removed after the test; skipped without
    redis-server, as nginx-tests' has() skips."""
    if not available():
        pytest.skip("redis-server is not installed")
    started = []

    def start(**kwargs):
        r = RedisServer(**kwargs)
        started.append(r)
        return r.start()

    yield start
    for r in started:
        r.cleanup()


@pytest.fixture
def redis_server(redis_factory):
    return redis_factory()


@pytest.fixture
def redis_cluster_factory():
    """redis_cluster_factory(masters=3, replicas=0) -> a started Redis
    Cluster on loopback, removed after the test."""
    if not available():
        pytest.skip("redis-server is not installed")
    started = []

    def start(**kwargs):
        c = RedisCluster(**kwargs)
        started.append(c)
        return c.start()

    yield start
    for c in started:
        c.cleanup()
