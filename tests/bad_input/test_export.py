"""Bad input to frcnn-export and to frcnn-predict backend=onnxruntime: a file of the other kind (an exported model
given as a checkpoint, a checkpoint given as the exported model, a foreign ONNX file), an option the exported model
cannot take, a missing optional extra. Each is one clean error naming what and why."""
from __future__ import annotations

import sys

import pytest
import torch
from omegaconf import OmegaConf

from frcnn.errors import ConfigError, FrcnnError

from helpers import compose_config, output_of, run_command


def export_config(*overrides):
    return compose_config(list(overrides), "export")


def predict_config(tmp_path, *overrides):
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    from PIL import Image

    Image.new("RGB", (40, 30)).save(images / "a.png")
    return compose_config([f"input={images}", f"output={tmp_path / 'out'}", *overrides], "predict")


def run_export(cfg):
    from frcnn.export.writer import export_checkpoint

    return export_checkpoint(cfg)


def run_predict(cfg):
    from frcnn.engine.predict import predict

    return predict(cfg)


def test_the_command_names_an_onnx_file_given_as_checkpoint(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07onnx")
    proc = run_command("frcnn-export", "checkpoint=model.onnx", "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 1, output_of(proc)
    assert "Traceback" not in output_of(proc)
    assert proc.stdout.strip().splitlines()[-1].endswith(
        "checkpoint=model.onnx is an ONNX model, not a training checkpoint: give the checkpoint frcnn-train wrote "
        "(RUN/checkpoints/last.pt or best.pt)"), output_of(proc)


def test_a_torch_file_that_is_not_a_training_checkpoint_is_named(tmp_path):
    torch.save({"model": {}}, tmp_path / "weights.pt")
    with pytest.raises(FrcnnError, match="weights.pt holds no config: it was not written by frcnn-train"):
        run_export(export_config(f"checkpoint={tmp_path / 'weights.pt'}"))
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(FrcnnError, match=r"other.pt is not an frcnn checkpoint \(no 'model' entry\)"):
        run_export(export_config(f"checkpoint={tmp_path / 'other.pt'}"))


def test_an_unknown_format_is_refused():
    with pytest.raises(ConfigError, match="format=tflite is not allowed: must be one of onnx, torch_export"):
        run_export(export_config("checkpoint=x.pt", "format=tflite"))


def test_a_pooler_onnx_cannot_express_is_refused():
    from frcnn.export.errors import check_exportable

    cfg = OmegaConf.create({"model": {"roi": {"pooler": "multiscale"}}})
    with pytest.raises(ConfigError, match=r"model.roi.pooler=multiscale cannot be exported: ROI pooling must become a "
                                          r"standard ONNX operator, and only these poolers have one \(align -> "
                                          r"RoiAlign, coordinate_transformation_mode=half_pixel; pool -> MaxRoiPool\)"):
        check_exportable(cfg)


@pytest.mark.parametrize("package,use", [("onnxscript", "format=onnx"), ("onnx", "format=onnx")])
def test_a_missing_export_extra_is_named(monkeypatch, package, use):
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if not installed
    with pytest.raises(FrcnnError, match=rf"{use} needs the package\(s\) {package}, which are not installed: "
                                         r"pip install 'frcnn\[export\]'"):
        run_export(export_config("checkpoint=x.pt", use))


def test_predict_names_a_missing_onnxruntime(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    cfg = predict_config(tmp_path, "backend=onnxruntime", "exported=model.onnx")
    with pytest.raises(FrcnnError, match=r"backend=onnxruntime needs the package\(s\) onnxruntime, which are not "
                                         r"installed: pip install 'frcnn\[export\]'"):
        run_predict(cfg)


@pytest.mark.parametrize("overrides,message", [
    (["backend=onnxruntime"], "backend=onnxruntime needs exported=PATH: the ONNX file frcnn-export wrote"),
    (["backend=onnxruntime", "exported=m.onnx", "model.roi.score_thresh=0.3"],
     "model.* overrides (model.roi.score_thresh=0.3) cannot change an exported model: its settings are part of the "
     "graph; export again with them: frcnn-export checkpoint=... model.roi.score_thresh=0.3"),
    (["backend=onnxruntime", "exported=m.onnx", "amp=bf16"],
     "amp=bf16 does not apply to backend=onnxruntime (the exported graph is float32): use amp=off"),
    (["backend=onnxruntime", "exported=m.onnx", "checkpoint=c.pt"],
     "checkpoint=c.pt and backend=onnxruntime: the model is exported=m.onnx; give one of them"),
    (["backend=tensorrt"], "backend=tensorrt is not allowed: must be one of pytorch, onnxruntime"),
    ([], "no value given for checkpoint: set it on the command line, e.g. checkpoint=..."),
])
def test_predict_refuses_options_an_exported_model_cannot_take(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as error:
        run_predict(predict_config(tmp_path, *overrides))
    assert message in str(error.value)


def test_predict_names_a_file_that_is_not_an_frcnn_onnx_model(tmp_path):
    pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    import onnx
    from onnx import TensorProto, helper

    torch.save({"model": {}}, tmp_path / "ckpt.pt")
    with pytest.raises(FrcnnError, match="ckpt.pt is a PyTorch file .a checkpoint or a .pt2 program., not an ONNX "
                                         "model: run a checkpoint with backend=pytorch checkpoint="):
        run_predict(predict_config(tmp_path, "backend=onnxruntime", f"exported={tmp_path / 'ckpt.pt'}"))
    (tmp_path / "notes.onnx").write_text("not a model")
    with pytest.raises(FrcnnError, match="notes.onnx is not an ONNX model"):
        run_predict(predict_config(tmp_path, "backend=onnxruntime", f"exported={tmp_path / 'notes.onnx'}"))
    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [value],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), tmp_path / "foreign.onnx")
    with pytest.raises(FrcnnError, match="foreign.onnx is an ONNX model, but not one frcnn-export wrote .no "
                                         "frcnn.config metadata.: its classes and input size are unknown"):
        run_predict(predict_config(tmp_path, "backend=onnxruntime", f"exported={tmp_path / 'foreign.onnx'}"))
