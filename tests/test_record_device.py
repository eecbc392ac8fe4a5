"""Which device a record belongs to: reports, history and the gate group cells by it, so a record taken on a remote
device must never be filed under the host that sent the job (on loopback both have the same machine id)."""

from __future__ import annotations

from edgestill.benchmarks.gate import cell_key, device_of
from edgestill.record import device_key, device_label

REMOTE = {"device": {"id": "pi5-lab-1", "profile": "raspberry-pi-5", "transport": "ssh"}, "device_id": "abc123",
          "cpu_model": "Cortex-A76"}
HOST = {"device": "host", "device_id": "abc123", "cpu_model": "Intel Xeon"}


def test_a_remote_record_is_filed_under_its_device_name_not_the_machine_id() -> None:
    assert device_label(REMOTE) == "pi5-lab-1"
    assert device_key(REMOTE) == "pi5-lab-1"
    assert device_of({"kind": "measured", "provenance": REMOTE}) == "pi5-lab-1"


def test_host_records_keep_the_machine_id_and_the_gate_matches_them_by_cpu() -> None:
    assert device_label(HOST) == "host"
    assert device_key(HOST) == "abc123"
    assert device_of({"kind": "measured", "provenance": HOST}) == "Intel Xeon"
    assert device_key({}) is None and device_label(None) is None


def test_an_estimate_for_a_profile_never_shares_a_cell_with_a_measurement_on_that_device() -> None:
    est = {"kind": "estimated", "artifact": "a", "provenance": {"device": {"id": "pi5-lab-1"}}}
    meas = {"kind": "measured", "artifact": "a", "provenance": REMOTE}
    assert device_of(est) == device_of(meas) == "pi5-lab-1"
    assert cell_key(est) != cell_key(meas)  # kind is part of the cell: an estimate is compared only with estimates
