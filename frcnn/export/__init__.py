"""Trained detectors as deployable files, and those files run by our own tools.

    export_checkpoint(cfg) -> path       frcnn-export: ONNX model or torch.export program (frcnn.export.writer)
    load_onnx_detector(path, device)     an ONNX file in onnxruntime, called as the detector (frcnn.export.runtime)
    load_program(path)                   a .pt2 program back, with its config (frcnn.export.runtime)
    ExportableDetector, prepare_inputs   the exported graph and its inputs (frcnn.export.graph)

ONNX needs the optional extra ``frcnn[export]`` (onnx, onnxscript, onnxruntime); nothing here imports them before
they are used.
"""
