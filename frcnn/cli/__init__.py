"""The commands: frcnn-train, frcnn-eval, frcnn-predict (thin Hydra wrappers around frcnn.engine)."""
