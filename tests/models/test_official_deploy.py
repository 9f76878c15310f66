"""YOLOv7 checkpoints from `tools/reparameterization.ipynb` (cfg/deploy/*.yaml: `Detect` with the implicit terms
folded into its convs, an `anchor_grid` buffer) and with RepConv in its deploy form (`rbr_reparam`) import and
reproduce the training model's outputs."""
import copy

import torch

from yolocompress.models.builder import Model
from yolocompress.models.checkpoint import fuse_like, load_model, save_checkpoint
from yolocompress.models.modules import RepConv

from .helpers import assert_outputs_close, image, outputs, randomise, small_cfg, small_model
from .official_fakes import write_official_checkpoint


def _deploy_cfg(name: str) -> dict:
    """cfg/deploy/<name>.yaml: the training layout with `Detect` in place of `IDetect`."""
    cfg = small_cfg(name)
    cfg["head"] = [row[:2] + ["Detect"] + row[3:] if row[2] == "IDetect" else row for row in cfg["head"]]
    return cfg


def _reparameterize(trained: Model, name: str) -> Model:
    """What the notebook does: build the deploy config, copy the matching tensors, fold ImplicitA/M into Detect."""
    deploy = Model(_deploy_cfg(name))
    folded = copy.deepcopy(trained)
    folded.head.fuse()
    deploy.load_state_dict(folded.state_dict(), strict=True)
    return deploy.eval()


def test_builder_builds_the_yolov7_deploy_configs():
    for name in ("yolov7-tiny", "yolov7"):
        model = Model(_deploy_cfg(name))
        assert type(model.head).__name__ == "Detect" and model.stride.tolist() == [8.0, 16.0, 32.0]


def test_reparameterized_yolov7_tiny_checkpoint_imports(tmp_path):
    trained = randomise(small_model("yolov7-tiny")).eval()
    deploy = _reparameterize(trained, "yolov7-tiny")
    path = write_official_checkpoint(deploy, tmp_path / "yolov7-tiny-deploy.pt", anchor_grid=True,
                                     extra={"training_results": None})
    loaded, ckpt = load_model(path)
    assert type(loaded.head).__name__ == "Detect" and ckpt["meta"]["source"] == "models.yolo.Model"
    x = image(2)
    assert_outputs_close(outputs(deploy, x), outputs(trained, x))  # the fake is a true reparameterization
    assert_outputs_close(outputs(loaded, x), outputs(copy.deepcopy(deploy).half().float(), x))  # FP16 in the file


def test_repconv_in_deploy_form_imports_and_round_trips(tmp_path):
    trained = randomise(small_model("yolov7")).eval()
    deployed = copy.deepcopy(trained)
    for m in deployed.modules():
        if isinstance(m, RepConv):
            m.fuse()  # what yolov7's fuse_repvgg_block leaves: rbr_reparam only
    path = write_official_checkpoint(deployed, tmp_path / "yolov7-repconv-deploy.pt")
    loaded, _ = load_model(path)
    reps = [m for m in loaded.modules() if isinstance(m, RepConv)]
    assert reps and all(hasattr(m, "rbr_reparam") and not hasattr(m, "rbr_dense") for m in reps)
    x = image(1)
    reference = outputs(copy.deepcopy(deployed).half().float(), x)
    assert_outputs_close(outputs(loaded, x), reference)
    again, _ = load_model(save_checkpoint(tmp_path / "ours.pt", loaded))
    assert all(torch.equal(a, b) for a, b in zip(outputs(again, x), outputs(loaded, x)))


def test_fuse_like_leaves_matching_layers_alone():
    model = small_model("yolov7")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fuse_like(model, before)
    assert model.state_dict().keys() == before.keys()
