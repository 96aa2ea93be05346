"""TensorBoard: a SummaryWriter under ``RUN_DIR/tensorboard``, fed from the run's :class:`EventStorage`.

Tags (the public interface): ``loss/rpn_cls``, ``loss/rpn_box``, ``loss/rcnn_cls``, ``loss/rcnn_box``,
``loss/total``, ``lr``, ``speed/images_per_s``, ``metrics/<name>`` and images ``predictions/<i>``.
"""
from __future__ import annotations

from pathlib import Path

from frcnn.engine.events import EventStorage


class TensorBoard:
    def __init__(self, folder):
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def write(self, storage: EventStorage) -> None:
        """Write what the storage holds that was not written yet."""
        for tag, value, step in storage.pop_scalars():
            self.writer.add_scalar(tag, value, step)
        for tag, images, step in storage.pop_images():
            for i, image in enumerate(images):
                self.writer.add_image(f"{tag}/{i}", image, step, dataformats="CHW")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
