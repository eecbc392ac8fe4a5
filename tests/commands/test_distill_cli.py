"""``edgestill distill RECIPE.yaml`` through the CLI: examples run, reruns resume, bad input exits 2 with nothing left."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STUDENT = {"model": "mobilenetv2-student", "kwargs": {"width_mult": 0.25, "last_channels": 32, "stem_stride": 2}}


def edgestill(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgestill", *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd)


def write_recipe(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def example(name: str, tmp_path: Path, **distill: object) -> Path:
    """A copy of an example with absolute paths and 1 epoch (the examples take 2), so a test runs it quickly."""
    doc = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    doc["distill"].update({"epochs": 1, **distill})
    teacher = doc.get("teacher") or {}
    if teacher.get("predictions"):
        teacher["predictions"] = str(EXAMPLES / teacher["predictions"])
    return write_recipe(tmp_path / f"{name}.yaml", doc)


def random_teacher_checkpoint(tmp_path: Path) -> Path:
    """Untrained resnet-teacher weights: enough to check layer names and shapes without training."""
    import torch
    from safetensors.torch import save_file

    from edgestill.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet-teacher", num_classes=10, width=8, blocks=[1, 1, 1])
    path = tmp_path / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def shapes_recipe(tmp_path: Path, **sections: object) -> dict:
    doc = {
        "data": {"builtin": "synthetic-shapes", "size": "quick"},
        "teacher": {"model": "resnet-teacher", "kwargs": {"width": 8, "blocks": [1, 1, 1]},
                    "checkpoint": str(random_teacher_checkpoint(tmp_path))},
        "student": STUDENT,
        "distill": {"losses": [{"name": "kd"}], "epochs": 1, "batch_size": 64},
    }
    doc.update(sections)
    return doc


def assert_bad_input(r: subprocess.CompletedProcess[str], out: Path, *messages: str) -> None:
    assert r.returncode == 2, r.stderr
    for m in messages:
        assert m in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists(), "a bad input must leave no partial output"


@pytest.mark.slow
def test_kd_example_distills_writes_the_student_and_a_rerun_skips_it(tmp_path: Path) -> None:
    recipe, out = example("kd", tmp_path), tmp_path / "out"
    r = edgestill("distill", str(recipe), "--out", str(out), "--train-threads", "1", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["kind"] == "distill" and report["recipe"] == "kd"
    s = report["student"]
    assert s["epochs_run"] == 1 and 0.0 <= s["test_accuracy"] <= 1.0 and s["losses"][0]["name"] == "kd"
    assert report["teacher"]["source"] == "model" and report["stages"]["distill"]["status"] == "ran"
    assert (out / "checkpoints" / "student.safetensors").is_file()
    assert json.loads((out / "report.json").read_text())["student"]["sha256"] == s["sha256"]
    assert "# edgestill distill: kd" in (out / "report.md").read_text()

    again = edgestill("distill", str(recipe), "--out", str(out), "--train-threads", "1", "--json")
    assert again.returncode == 0, again.stderr
    rerun = json.loads(again.stdout)
    assert rerun["stages"]["distill"]["status"] == "skipped (unchanged)"
    assert rerun["student"]["sha256"] == s["sha256"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fitnets", "blackbox-predictions"])
def test_examples_run_through_distill(name: str, tmp_path: Path) -> None:
    r = edgestill("distill", str(example(name, tmp_path)), "--out", str(tmp_path / "out"), "--train-threads", "1", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["student"]["epochs_run"] == 1
    if name == "blackbox-predictions":
        assert report["teacher"]["source"] == "predictions" and report["student"]["teacher_mode"] == "precomputed"


@pytest.mark.slow
def test_user_factory_student_image_folder_and_torchscript_teacher(tmp_path: Path) -> None:
    """A student from a ``package.module:function`` factory, images from class folders, an inference-only teacher."""
    import torch
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, cls in enumerate(("cat", "dog", "emu")):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(np.full((8, 8, 3), 60 * k + rng.integers(0, 20), np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    (tmp_path / "mynets.py").write_text(
        "import torch\n"
        "def small(num_classes=3):\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),\n"
        "                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, num_classes))\n")
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))
    torch.jit.save(torch.jit.script(teacher), str(tmp_path / "teacher.pt"))
    doc = {"data": {"folder": "imgs", "val_fraction": 0.2, "test_fraction": 0.2},
           "teacher": {"program": "teacher.pt"},
           "student": {"model": "mynets:small"},
           "distill": {"losses": [{"name": "kd"}], "epochs": 2, "batch_size": 8}}
    recipe = write_recipe(tmp_path / "r.yaml", doc)
    r = edgestill("distill", str(recipe), "--out", str(tmp_path / "out"), "--train-threads", "1", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["data"]["class_names"] == ["cat", "dog", "emu"] and report["data"]["n_train"] == 24
    assert report["teacher"]["source"] == "program" and report["student"]["parameters"] == 8 * 3 * 9 + 8 + 8 * 3 + 3


# --- bad input: exit 2, a message naming the problem, no output folder left behind --------------------------------


def test_unknown_loss_exits_2_with_the_closest_name(tmp_path: Path) -> None:
    doc = shapes_recipe(tmp_path, distill={"losses": [{"name": "dkdd"}], "epochs": 1})
    out = tmp_path / "out"
    r = edgestill("distill", str(write_recipe(tmp_path / "r.yaml", doc)), "--out", str(out))
    assert_bad_input(r, out, "distill.losses: unknown loss", "'dkdd'", "Did you mean 'dkd'?")


def test_unknown_key_exits_2_with_the_closest_key(tmp_path: Path) -> None:
    doc = shapes_recipe(tmp_path, distill={"losses": [{"name": "kd"}], "epocs": 1})
    out = tmp_path / "out"
    r = edgestill("distill", str(write_recipe(tmp_path / "r.yaml", doc)), "--out", str(out))
    assert_bad_input(r, out, "recipe key 'distill.epocs' is not valid. Did you mean 'epochs'?")


@pytest.mark.slow
def test_layer_name_that_does_not_exist_exits_2_naming_it(tmp_path: Path) -> None:
    doc = shapes_recipe(tmp_path, distill={"losses": [
        {"name": "fitnets", "options": {"pairs": [["features.33", "features.2"]]}}], "epochs": 1})
    out = tmp_path / "out"
    r = edgestill("distill", str(write_recipe(tmp_path / "r.yaml", doc)), "--out", str(out), "--train-threads", "1")
    assert_bad_input(r, out, "features.33", "student")


@pytest.mark.slow
def test_teacher_output_shape_mismatch_exits_2_naming_both_shapes(tmp_path: Path) -> None:
    import torch

    five = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 5))  # 5 classes; the data has 10
    torch.jit.save(torch.jit.script(five), str(tmp_path / "t5.pt"))
    doc = shapes_recipe(tmp_path, teacher={"program": str(tmp_path / "t5.pt")})
    out = tmp_path / "out"
    r = edgestill("distill", str(write_recipe(tmp_path / "r.yaml", doc)), "--out", str(out), "--train-threads", "1")
    assert_bad_input(r, out, "teacher output shape [2, 5] does not match the student's [2, 10]")


def test_empty_data_folder_exits_2(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    doc = shapes_recipe(tmp_path, data={"folder": str(tmp_path / "imgs")})
    out = tmp_path / "out"
    r = edgestill("distill", str(write_recipe(tmp_path / "r.yaml", doc)), "--out", str(out))
    assert_bad_input(r, out, "has no class sub-folders")


def test_mislabelled_data_folder_exits_2_naming_the_file(tmp_path: Path) -> None:
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (32, 32)).save(tmp_path / "imgs" / cls / f"{i}.png")
    (tmp_path / "imgs" / "dog" / "labels.txt").write_text("not an image")
    doc = shapes_recipe(tmp_path, data={"folder": str(tmp_path / "imgs")})
    out = tmp_path / "out"
    r = edgestill("distill", str(write_recipe(tmp_path / "r.yaml", doc)), "--out", str(out))
    assert_bad_input(r, out, "dog/labels.txt", "not images")


def test_npz_labels_outside_the_class_range_exit_2(tmp_path: Path) -> None:
    y = np.arange(20) % 2
    y[[4, 9]] = 7
    np.savez(tmp_path / "d.npz", x=np.zeros((20, 3, 32, 32), np.float32), y=y)
    doc = shapes_recipe(tmp_path, data={"npz": str(tmp_path / "d.npz"), "num_classes": 2})
    out = tmp_path / "out"
    r = edgestill("distill", str(write_recipe(tmp_path / "r.yaml", doc)), "--out", str(out))
    assert_bad_input(r, out, "2 label(s) outside the class range [0, 2)", "4→7, 9→7")
    out.mkdir()  # an empty folder given as --out is left empty
    r = edgestill("distill", str(tmp_path / "r.yaml"), "--out", str(out))
    assert r.returncode == 2 and list(out.iterdir()) == []


@pytest.mark.slow
def test_predictions_with_ids_not_matching_the_data_exit_2_saying_how_many_and_which(tmp_path: Path) -> None:
    ids = np.concatenate([np.arange(995), [5000, 5001, 5002, 5003, 5004]])  # quick shapes ids are 0..999
    np.savez(tmp_path / "p.npz", ids=ids, logits=np.zeros((1000, 10), np.float32))
    doc = shapes_recipe(tmp_path, teacher={"predictions": str(tmp_path / "p.npz")})
    out = tmp_path / "out"
    r = edgestill("distill", str(write_recipe(tmp_path / "r.yaml", doc)), "--out", str(out))
    assert_bad_input(r, out, "5 of 1000 sample ids match no sample of the data: '5000', '5001', '5002', '5003', '5004'")


def test_an_existing_run_is_kept_when_a_later_recipe_is_bad(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("user file")
    doc = shapes_recipe(tmp_path)
    r = edgestill("distill", str(write_recipe(tmp_path / "r.yaml", doc)), "--out", str(out))
    assert r.returncode == 2 and "not written by edgestill" in r.stderr
    assert (out / "mine.txt").read_text() == "user file"


def test_help_shows_examples() -> None:
    r = edgestill("distill", "--help")
    assert r.returncode == 0 and "examples/kd.yaml" in r.stdout and "Exit codes" in r.stdout


def test_torchscript_and_torch_export_teachers_run_for_inference_only(tmp_path: Path) -> None:
    import torch

    from edgestill.chain.stages import _load_program
    from edgestill.errors import InputError

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 6 * 6, 5)).eval()
    x = torch.randn(7, 3, 8, 8)
    with torch.no_grad():
        expected = net(x)
    torch.jit.save(torch.jit.script(net), str(tmp_path / "t.pt"))
    torch.export.save(torch.export.export(net, (x[:1],)), str(tmp_path / "t.pt2"))  # fixed batch of 1
    for name in ("t.pt", "t.pt2"):
        teacher = _load_program(tmp_path / name)
        teacher.train()  # the trainer toggles modes; an inference-only teacher ignores it
        torch.testing.assert_close(teacher(x), expected, rtol=1e-4, atol=1e-5)
        assert list(teacher.parameters()) == []  # nothing to train, no layers to hook
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match="is not a TorchScript file"):
        _load_program(tmp_path / "junk.pt")


def _earlier_run(out: Path) -> list[Path]:
    """A folder 'edgestill run' wrote (marker, stage records, a report); returns its files."""
    (out / "artifacts").mkdir(parents=True)
    (out / ".edgestill-out").write_text(json.dumps({"tool": "edgestill", "kind": "run"}))
    (out / "stages.json").write_text(json.dumps({"distill": {"key": "k"}}))
    (out / "report.json").write_text("{}")
    (out / "artifacts" / "m.onnx").write_bytes(b"exported")
    return sorted(out.rglob("*"))


def test_distill_with_bad_data_keeps_an_earlier_run_folder(tmp_path: Path) -> None:
    """Bad input: data.npz is not an NPZ file, and --out is a folder an earlier 'edgestill run' wrote. Without
    --overwrite the folder is refused as another command's; with it, the data is checked before anything is deleted."""
    (tmp_path / "bad.npz").write_text("not an npz")
    out = tmp_path / "runs" / "r"
    files = _earlier_run(out)
    recipe = write_recipe(tmp_path / "r.yaml", shapes_recipe(tmp_path, data={"npz": str(tmp_path / "bad.npz")}))
    r = edgestill("distill", str(recipe), "--out", str(out))
    assert r.returncode == 2 and "holds the output of 'edgestill run'" in r.stderr and "--overwrite" in r.stderr
    assert sorted(out.rglob("*")) == files
    r = edgestill("distill", str(recipe), "--out", str(out), "--overwrite")
    assert r.returncode == 2 and "bad.npz" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert sorted(out.rglob("*")) == files and (out / "artifacts" / "m.onnx").read_bytes() == b"exported"


def test_distill_never_empties_a_folder_holding_its_teacher_checkpoint(tmp_path: Path) -> None:
    """Bad input: teacher.checkpoint lies inside --out, a folder an earlier distill wrote, and --force asks to start
    over; refused before anything is deleted."""
    out = tmp_path / "out"
    out.mkdir()
    (out / ".edgestill-out").write_text(json.dumps({"tool": "edgestill", "kind": "distill"}))
    doc = shapes_recipe(tmp_path)
    teacher = Path(doc["teacher"]["checkpoint"]).rename(out / "teacher.safetensors")
    doc["teacher"]["checkpoint"] = str(teacher)
    r = edgestill("distill", str(write_recipe(tmp_path / "r.yaml", doc)), "--out", str(out), "--force")
    assert r.returncode == 2 and f"teacher.checkpoint {teacher} lies inside --out" in r.stderr, r.stderr
    assert teacher.is_file()
