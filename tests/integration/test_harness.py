"""The harness checks itself: a sanitizer run that silently ran without the
sanitizer, or a log scan that sees nothing, would make the suite
unable to fail."""

import pytest

from harness import nginx as harness


def maps_of(pid):
    with open("/proc/%d/maps" % pid) as f:
        return f.read()


def test_workers_run_the_module_under_test(nginx_factory):
    n = nginx_factory("server { listen 127.0.0.1:%%PORT%%; "
                      "location /cachez { ai_gateway_cachez; } }")
    workers = n.worker_pids()
    assert workers, "nginx has workers"
    maps = maps_of(workers[0])
    assert harness.MODULE in maps, "the worker mapped %s" % harness.MODULE
    if harness.SANITIZE:
        assert "libasan" in maps, "the sanitizer run preloads libasan"


@pytest.mark.skipif(not harness.SANITIZE, reason="sanitizer run only")
def test_sanitizer_reports_are_collected(nginx_factory):
    n = nginx_factory("server { listen 127.0.0.1:%%PORT%%; }")
    n.stop()
    with open(n.dir + "/logs/asan.1", "w") as f:
        f.write("==1==ERROR: AddressSanitizer: heap-use-after-free\n")
    assert any("AddressSanitizer" in a for a in n.alerts())
    import os
    os.unlink(n.dir + "/logs/asan.1")


def test_alerts_in_the_error_log_are_collected(nginx_factory):
    n = nginx_factory("server { listen 127.0.0.1:%%PORT%%; }")
    n.stop()
    with open(n.error_log, "a") as f:
        f.write("2026/01/01 00:00:00 [alert] 1#1: planted\n")
    assert any("planted" in a for a in n.alerts())
    # remove the planted line so teardown stays green
    with open(n.error_log) as f:
        text = f.read().replace("[alert] 1#1: planted", "[info] planted")
    with open(n.error_log, "w") as f:
        f.write(text)
