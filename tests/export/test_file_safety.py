"""Re-exporting into a folder removes only the files an earlier export wrote there, never a path a manifest names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgestill.artifact import MANIFEST_SUFFIX, Artifact, sha256_file
from edgestill.export.api import _remove_final


def _old_artifact(out: Path, name: str = "m-onnx-fp32") -> Path:
    """An earlier export's files and manifest in ``out``; returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.onnx").write_bytes(b"onnx bytes")
    art = Artifact(name=name, format="onnx", precision="fp32", directory=out, model_file=f"{name}.onnx")
    art.hash_files()
    return art.write_manifest()


def _add_entries(manifest: Path, entries: dict[str, str]) -> None:
    doc = json.loads(manifest.read_text())
    doc["files"].update(entries)
    manifest.write_text(json.dumps(doc))


def test_removing_an_earlier_artifact_removes_its_own_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = _old_artifact(out)
    (out / "other.txt").write_text("not listed")
    _remove_final(out, "m-onnx-fp32")
    assert not manifest.exists() and not (out / "m-onnx-fp32.onnx").exists()
    assert (out / "other.txt").read_text() == "not listed"


def test_a_crafted_manifest_cannot_delete_files_outside_the_folder(tmp_path: Path) -> None:
    """Bad input: a manifest whose file list names ``../victim.txt``, an absolute path and ``sub/../../victim.txt``,
    each with the victim's real sha256; every victim survives."""
    out = tmp_path / "out"
    manifest = _old_artifact(out)
    victim, far = tmp_path / "victim.txt", tmp_path / "elsewhere" / "victim2.txt"
    victim.write_text("precious")
    far.parent.mkdir()
    far.write_text("precious too")
    (out / "sub").mkdir()
    _add_entries(manifest, {"../victim.txt": sha256_file(victim), str(far): sha256_file(far),
                            "sub/../../victim.txt": sha256_file(victim)})
    _remove_final(out, "m-onnx-fp32")
    assert victim.read_text() == "precious" and far.read_text() == "precious too"
    assert not manifest.exists() and not (out / "m-onnx-fp32.onnx").exists()  # the artifact's own file still goes


def test_a_symlink_in_the_folder_cannot_lead_a_deletion_outside(tmp_path: Path) -> None:
    """Bad input: a manifest naming ``link/victim.txt`` where ``link`` is a symlink to a folder outside --out, and
    ``alias.txt``, a symlink to a victim file; neither victim is deleted."""
    out = tmp_path / "out"
    manifest = _old_artifact(out)
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("precious")
    (out / "link").symlink_to(outside, target_is_directory=True)
    (out / "alias.txt").symlink_to(victim)
    _add_entries(manifest, {"link/victim.txt": sha256_file(victim), "alias.txt": sha256_file(victim)})
    _remove_final(out, "m-onnx-fp32")
    assert victim.read_text() == "precious"


def test_a_listed_file_changed_since_the_export_is_kept(tmp_path: Path) -> None:
    """Bad input: a file the manifest lists was replaced by the user's own (its sha256 no longer matches)."""
    out = tmp_path / "out"
    _old_artifact(out)
    (out / "m-onnx-fp32.onnx").write_bytes(b"the user's own model")
    _remove_final(out, "m-onnx-fp32")
    assert (out / "m-onnx-fp32.onnx").read_bytes() == b"the user's own model"


def test_a_manifest_symlink_is_removed_without_touching_its_target(tmp_path: Path) -> None:
    """Bad input: the manifest's name is a symlink to a file outside --out."""
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.json"
    victim.write_text("{}")
    (out / f"m-onnx-fp32{MANIFEST_SUFFIX}").symlink_to(victim)
    _remove_final(out, "m-onnx-fp32")
    assert victim.read_text() == "{}" and not (out / f"m-onnx-fp32{MANIFEST_SUFFIX}").is_symlink()


@pytest.mark.parametrize("entry", ["", ".", "a//b", "..", "/etc/passwd", "a\\..\\b", "x\0y"])
def test_odd_entries_are_never_deletable(tmp_path: Path, entry: str) -> None:
    from edgestill.export.api import _written_by_us

    assert _written_by_us(tmp_path, entry, "0" * 64) is None
