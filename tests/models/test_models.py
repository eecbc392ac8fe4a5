"""Built-in models: registry, options, shapes, and clean conversion to ONNX, TFLite and OpenVINO."""

import numpy as np
import pytest
import torch

from edgestill.errors import ConfigError, UnknownNameError
from edgestill.models import count_parameters, create_model, model_names

SMALL = {"resnet-teacher": {"width": 8}, "mobilenetv2-student": {"width_mult": 0.25, "last_channels": 64}}


def test_names():
    assert {"resnet-teacher", "mobilenetv2-student"} <= set(model_names())


def test_unknown_name_lists_valid_and_closest():
    with pytest.raises(UnknownNameError) as err:
        create_model("mobilenetv2", num_classes=10)
    assert "mobilenetv2-student" in str(err.value) and "Did you mean" in str(err.value)


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("in_channels,size", [(3, 32), (1, 8)])
def test_forward_shape(name, in_channels, size):
    model = create_model(name, num_classes=7, in_channels=in_channels, seed=0, **SMALL[name]).eval()
    out = model(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, 7)


def test_seed_makes_weights_reproducible_without_touching_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = create_model("resnet-teacher", num_classes=10, seed=5, width=8)
    after = torch.rand(1)
    b = create_model("resnet-teacher", num_classes=10, seed=5, width=8)
    assert before == after
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_width_options_change_size():
    t_small = count_parameters(create_model("resnet-teacher", num_classes=10, width=8))
    t_big = count_parameters(create_model("resnet-teacher", num_classes=10, width=16, blocks=[2, 2, 2]))
    s_small = count_parameters(create_model("mobilenetv2-student", num_classes=10, width_mult=0.25))
    s_big = count_parameters(create_model("mobilenetv2-student", num_classes=10, width_mult=1.0))
    assert t_big > 3 * t_small and s_big > 3 * s_small
    model = torch.nn.Linear(3, 2)
    assert count_parameters(model) == 8


@pytest.mark.parametrize("name,kwargs", [
    ("resnet-teacher", {"depth": 3}),
    ("resnet-teacher", {"width": 0}),
    ("resnet-teacher", {"blocks": [1, "2"]}),
    ("mobilenetv2-student", {"width_mult": 0}),
    ("mobilenetv2-student", {"stem_stride": 3}),
    ("mobilenetv2-student", {"blocks": [[6, 16, 1]]}),
])
def test_bad_options_raise_config_error(name, kwargs):
    with pytest.raises(ConfigError):
        create_model(name, num_classes=10, **kwargs)


def test_bad_num_classes_is_config_error():
    with pytest.raises(ConfigError):
        create_model("resnet-teacher", num_classes=0)


def test_only_export_friendly_layers():
    allowed = (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.ReLU, torch.nn.ReLU6, torch.nn.AdaptiveAvgPool2d,
               torch.nn.Linear, torch.nn.Sequential, torch.nn.Identity)
    for name, kwargs in SMALL.items():
        model = create_model(name, num_classes=10, **kwargs)
        for module in model.modules():
            if module is model or type(module).__name__ in ("BasicBlock", "InvertedResidual"):
                continue
            assert isinstance(module, allowed), f"{name}: {type(module).__name__}"


def _trained_like(name):
    """A model with non-trivial BatchNorm statistics, in eval mode (as it is when exported)."""
    model = create_model(name, num_classes=10, seed=0, **SMALL[name])
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 + 0.3)
    return model.eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_converts_to_onnx_tflite_openvino_with_matching_outputs(name, tmp_path):
    model = _trained_like(name)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(x).numpy()

    import onnxruntime as ort
    onnx_path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), str(onnx_path), dynamo=True, external_data=False)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)

    import litert_torch
    from ai_edge_litert.interpreter import Interpreter
    tfl_path = tmp_path / "m.tflite"
    litert_torch.convert(model, (x,)).export(str(tfl_path))
    interp = Interpreter(model_path=str(tfl_path), num_threads=1)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x.numpy())
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)

    from edgestill.runtimes.openvino import no_telemetry

    with no_telemetry():  # openvino's usage telemetry forks a sender process: not while JAX threads run
        import openvino as ov

        compiled = ov.Core().compile_model(ov.convert_model(model, example_input=x), "CPU",
                                           {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
    got = compiled(x.numpy())[0]
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
