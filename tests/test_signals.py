"""An interrupt a library swallows is raised again at the next step."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from edgestill import signals


def test_a_swallowed_ctrl_c_is_raised_again_at_the_next_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault: Ctrl-C arrives inside a library call that catches every exception (a converter falling back to
    another path), so the KeyboardInterrupt never reaches edgestill; the next check raises it again."""
    monkeypatch.setattr(signals, "_pending", [])
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        signals.install()
        signals.check()  # nothing pending: no-op
        try:  # the library's catch-all
            os.kill(os.getpid(), signal.SIGINT)
            threading.Event().wait(1)  # let the handler run
        except BaseException:  # noqa: BLE001 - that is the library's bug this guards against
            pass
        with pytest.raises(KeyboardInterrupt) as info:
            signals.check()
        assert not isinstance(info.value, signals.Terminated)
        signals._pending.append(signal.SIGTERM)
        with pytest.raises(signals.Terminated):
            signals.check()
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def test_the_chain_stops_at_the_next_stage_after_a_swallowed_interrupt(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgestill.chain.run import _Silent, _Stages

    monkeypatch.setattr(signals, "_pending", [signal.SIGINT])
    stages = _Stages(tmp_path, {}, _Silent())
    with pytest.raises(KeyboardInterrupt):
        stages.run("export", lambda: "never runs")
