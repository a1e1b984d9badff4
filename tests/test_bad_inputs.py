"""Every op, forward and backward, on bad and odd inputs, each case in its own process:
a clear RuntimeError naming the argument, non-finite values propagated, never a crash."""

from __future__ import annotations

import multiprocessing
import re

import pytest

from bad_input_cases import CASES, run_case

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(["torch", "mlpmix", "bad_input_cases"])


@pytest.mark.parametrize("name", list(CASES))
def test_bad_or_odd_input(name):
    results = _context.Queue()
    child = _context.Process(target=run_case, args=(name, results))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0, f"{name}: the process died (exit code {child.exitcode})"
    kind, detail = results.get(timeout=5)
    expected = CASES[name][1]
    if expected[0] == "raises":
        assert kind == "raised", f"{name}: expected an error, returned {detail}"
        exc_type, message, trace = detail
        assert exc_type == "RuntimeError", trace
        op = name.split("/")[0]
        assert re.match(rf"mlpmix\.{op}: {expected[1]}\b", message), message
        for text in expected[2:]:
            assert text in message, message
    else:
        assert kind == "returned", f"{name}: raised {detail[2] if kind == 'raised' else detail}"
        shape, finite = detail
        if expected[0] == "propagates":
            assert not finite, f"{name}: the non-finite input vanished"
        else:
            assert shape == expected[1]
