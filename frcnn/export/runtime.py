"""Exported models run by our own tools: ``frcnn-predict backend=onnxruntime exported=model.onnx``.

:class:`OnnxDetector` behaves as the detector does in eval mode -- a list of CHW images in, one dict of ``boxes``,
``labels``, ``scores`` per image out, boxes in each image's own pixels -- so the predict loop runs it unchanged. The
resize to the model's input size happens here, on the CPU, as the model's own preprocessor does it (rebuilt from the
config stored in the file); everything after it runs in onnxruntime.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Dict, List, Tuple

import torch
from omegaconf import DictConfig

from frcnn.export.errors import ExportError, require_extra
from frcnn.export.graph import INPUT_NAMES, prepare_inputs, split_outputs


def read_onnx_config(path: Path) -> Tuple[object, DictConfig]:
    """(the ONNX model's proto, the train config frcnn-export stored in it); refuses any other file, naming it."""
    import onnx

    from frcnn.engine.restore import checkpoint_config
    from frcnn.export.writer import METADATA_KEY

    if not path.is_file():
        raise ExportError(f"exported={path}: no such file")
    if zipfile.is_zipfile(path):  # what torch.save and torch.export.save write
        raise ExportError(f"exported={path} is a PyTorch file (a checkpoint or a .pt2 program), not an ONNX model: "
                          f"run a checkpoint with backend=pytorch checkpoint={path}, or export it first with "
                          f"frcnn-export checkpoint={path} output=model.onnx")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # not protobuf, or truncated
        raise ExportError(f"exported={path} is not an ONNX model ({type(error).__name__}); give the file "
                          "frcnn-export format=onnx wrote") from None
    stored = {p.key: p.value for p in proto.metadata_props}.get(METADATA_KEY)
    if stored is None:
        raise ExportError(f"exported={path} is an ONNX model, but not one frcnn-export wrote (no {METADATA_KEY} "
                          "metadata): its classes and input size are unknown")
    return proto, checkpoint_config({"config": json.loads(stored)}, path)


def load_program(path) -> Tuple[torch.nn.Module, DictConfig]:
    """(the program frcnn-export format=torch_export wrote, as a callable module; the train config stored in it). Its
    graph calls ``torchvision::roi_align`` / ``roi_pool`` and ``frcnn::nms_keep``: importing them registers them."""
    import torchvision  # noqa: F401  (registers torchvision's operators)

    import frcnn.modeling.nms  # noqa: F401  (registers frcnn::nms_keep)
    from frcnn.engine.restore import checkpoint_config
    from frcnn.export.writer import METADATA_KEY

    extra = {METADATA_KEY: ""}
    program = torch.export.load(str(path), extra_files=extra)
    return program.module(), checkpoint_config({"config": json.loads(extra[METADATA_KEY])}, path)


class OnnxDetector(torch.nn.Module):
    """An ONNX model written by frcnn-export, in onnxruntime, with the detector's eval-mode calling contract."""

    def __init__(self, path: Path, providers: List[str]):
        super().__init__()
        import onnxruntime

        from frcnn.modeling.build import build_preprocessor

        proto, self.config = read_onnx_config(path)
        self.preprocessor = build_preprocessor(self.config.model).eval()
        self.session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=providers)

    def forward(self, images: List[torch.Tensor]) -> List[Dict[str, torch.Tensor]]:
        inputs = prepare_inputs([image.cpu() for image in images], self.preprocessor)
        boxes, scores, labels, _, count = self.session.run(None, {
            name: tensor.numpy() for name, tensor in zip(INPUT_NAMES, inputs)})
        return split_outputs(boxes, scores, labels, count)


def load_onnx_detector(path, device: torch.device) -> OnnxDetector:
    """:class:`OnnxDetector` for ``path`` on ``device`` (CPU, or CUDA where onnxruntime has it)."""
    require_extra("onnxruntime")
    import onnxruntime

    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise ExportError(f"device={device}: this onnxruntime has no CUDA provider (it has "
                              f"{', '.join(onnxruntime.get_available_providers())}); use device=cpu")
        providers.insert(0, "CUDAExecutionProvider")
    return OnnxDetector(Path(str(path)).expanduser(), providers)
