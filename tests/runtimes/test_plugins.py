"""Runtimes of your own: modules named in $EDGESTILL_RUNTIME_PLUGINS register runtimes every command can use."""

from __future__ import annotations

import pytest

from edgestill.errors import InputError
from edgestill.runtimes import base


def test_a_plugin_module_registers_a_runtime_that_is_then_listed_and_loadable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(base.PLUGINS_ENV, "tests.runtimes.crashing_runtime")
    assert "crash-test" in base.runtime_names()
    assert base.get_runtime("crash-test").formats == base.get_runtime("onnxruntime").formats


def test_a_plugin_that_cannot_be_imported_is_bad_input_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(base.PLUGINS_ENV, "no_such_pkg.runtimes")
    with pytest.raises(InputError, match="EDGESTILL_RUNTIME_PLUGINS names 'no_such_pkg.runtimes'"):
        base.get_runtime("not-registered")
