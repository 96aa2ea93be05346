"""The commands: frcnn-train, frcnn-eval, frcnn-predict (thin Hydra wrappers around frcnn.engine)."""
import os

# OpenMP threads that spin while they wait are a disaster on a small, shared CPU: with a DataLoader worker or any
# other busy process on the same cores, a training step on 2 cores ran an order of magnitude slower.
# Passive waiting costs nothing measurable when the cores are free. Set before torch is imported (it is not
# yet: frcnn/__init__ only registers configs); an explicit OMP_WAIT_POLICY from the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
