"""ONNX export: onnxruntime reproduces the fused PyTorch model; names, dynamic axes, errors, atomic writes."""
import onnx
import pytest
import torch

from yolocompress.core.errors import ConfigError
from yolocompress.models.export import check_onnx, export_onnx, inference_copy, run_onnx

from .helpers import image, prune, randomise, small_model

SIZE = 128


def _parity(path, model, batch=1, size=SIZE):
    x = image(batch, size, seed=1)
    with torch.no_grad():
        expected = inference_copy(model, torch.device("cpu"))(x)
    got = torch.from_numpy(run_onnx(path, x))
    assert got.shape == expected.shape == (batch, 3 * sum((size // s) ** 2 for s in (8, 16, 32)), model.head.no)
    # objectness/class columns within 1e-4; box columns are pixels, so 1e-6 relative slack (float32 rounding)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-6)


@pytest.mark.parametrize("name", ["yolov5n", "yolov7-tiny"])
def test_onnx_matches_pytorch(tmp_path, name):
    model = randomise(small_model(name))
    path = export_onnx(model, tmp_path / f"{name}.onnx", imgsz=SIZE)
    _parity(path, model)
    assert check_onnx(path, model, SIZE) < 1e-3
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["images"] and [o.name for o in graph.output] == ["output0"]
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 3, SIZE, SIZE]
    assert not any(n.op_type == "BatchNormalization" for n in graph.node)  # fused
    assert model.training and any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # untouched
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_dynamic_batch_and_size(tmp_path):
    model = small_model("yolov5n")
    path = export_onnx(model, tmp_path / "dyn.onnx", imgsz=SIZE, dynamic=True)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    _parity(path, model, batch=2)
    _parity(path, model, batch=1, size=96)


def test_pruned_model_exports(tmp_path):
    model = prune(randomise(small_model("yolov7-tiny")))
    _parity(export_onnx(model, tmp_path / "pruned.onnx", imgsz=SIZE, batch_size=2), model, batch=2)


def test_static_batch_size_and_metadata(tmp_path):
    model = small_model("yolov5n")
    path = export_onnx(model, tmp_path / "sub" / "b2.onnx", imgsz=64, batch_size=2)
    proto = onnx.load(str(path))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["stride"] == "32" and meta["names"] == repr(model.names)


@pytest.mark.parametrize("kwargs, message", [
    ({"half": True, "device": "cpu"}, "--half needs a CUDA device"),
    ({"imgsz": 100}, "--imgsz 100 must be a positive multiple of the model stride 32"),
    ({"batch_size": 0}, "--batch-size 0 must be a positive integer"),
    ({"opset": 9}, "--opset 9 is not supported; use 11..20"),
])
def test_bad_export_options(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        export_onnx(small_model("yolov5n"), tmp_path / "x.onnx", **kwargs)
    assert not list(tmp_path.iterdir())


def test_exporter_failure_is_one_line_and_leaves_no_file(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("Unsupported: ONNX export of operator foo\nmore details")

    monkeypatch.setattr(torch.onnx, "export", fail)
    with pytest.raises(ConfigError, match=r"x.onnx: ONNX export failed at opset 17 \(RuntimeError: .*foo\)") as e:
        export_onnx(small_model("yolov5n"), tmp_path / "x.onnx", imgsz=64)
    assert "\n" not in str(e.value) and not list(tmp_path.iterdir())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_half_export_on_cuda(tmp_path):
    path = export_onnx(small_model("yolov5n"), tmp_path / "h.onnx", imgsz=SIZE, half=True, device="0")
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


def test_opset_defaults_to_19_for_deform_conv_and_rejects_lower():
    from torchvision.ops import DeformConv2d
    from yolocompress.models.export import choose_opset

    plain, deform = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), torch.nn.Sequential(DeformConv2d(3, 4, 3))
    assert choose_opset(plain, None) == 17 and choose_opset(plain, 12) == 12
    assert choose_opset(deform, None) == 19 and choose_opset(deform, 20) == 20
    with pytest.raises(ConfigError, match=r"0 is a DeformConv2d, which ONNX expresses \(as DeformConv\) from opset "
                                          r"19; use --opset 19 or 20 \(or leave --opset unset\), not 17"):
        choose_opset(deform, 17)


def test_deform_conv_exports_as_onnx_deformconv_with_parity(tmp_path):
    from torchvision.ops import DeformConv2d

    class DCN(torch.nn.Module):  # offsets and mask from a conv with non-zero weights: the sampling really moves
        def __init__(self):
            super().__init__()
            self.offset = torch.nn.Conv2d(3, 27, 3, 2, 1)
            self.dcn = DeformConv2d(3, 5, 3, 2, 1)

        def forward(self, x):
            o1, o2, mask = self.offset(x).chunk(3, 1)
            return [self.dcn(x, torch.cat((o1, o2), 1), mask.sigmoid())]

    model = DCN().eval()
    path = tmp_path / "dcn.onnx"
    torch.onnx.export(model, (image(),), str(path), opset_version=19, dynamo=False, input_names=["images"],
                      output_names=["output0"])
    assert "DeformConv" in [n.op_type for n in onnx.load(str(path)).graph.node]
    with torch.no_grad():
        expected = model(image())[0]
    torch.testing.assert_close(torch.from_numpy(run_onnx(path, image())), expected, atol=1e-5, rtol=1e-5)


def test_a_runtime_without_the_operator_gives_one_line(tmp_path, monkeypatch):
    from yolocompress.models import export as export_module

    def no_kernel(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for "
                           "DeformConv(19) node with name '/model.5/dcn/DeformConv'")

    monkeypatch.setattr(export_module, "check_onnx", no_kernel)
    diff, reason = export_module.parity_or_reason(tmp_path / "m.onnx", small_model("yolov5n"), 64)
    assert diff is None and "\n" not in reason
    assert "has no kernel for DeformConv(19): m.onnx is valid ONNX" in reason and "not checked" in reason

    def other_failure(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(export_module, "check_onnx", other_failure)
    with pytest.raises(RuntimeError, match="shape mismatch"):  # only a missing kernel is excused
        export_module.parity_or_reason(tmp_path / "m.onnx", small_model("yolov5n"), 64)
