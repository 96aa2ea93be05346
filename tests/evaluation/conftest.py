"""Small in-memory datasets for the evaluation tests (VOC-like and COCO-like)."""
import json

import numpy as np
import pytest


class FakeVOCDataset:
    format = "voc"

    def __init__(self, classes, image_ids, gts):
        self.classes = list(classes)
        self.image_ids = list(image_ids)
        self._gts = gts

    def __len__(self):
        return len(self.image_ids)

    def ground_truth(self, i):
        g = self._gts[i]
        m = len(g["labels"])
        return {
            "image_id": self.image_ids[i],
            "boxes": np.asarray(g["boxes"], np.float32).reshape(-1, 4),
            "labels": np.asarray(g["labels"], np.int64),
            "difficult": np.asarray(g.get("difficult", [False] * m), bool),
        }


class FakeCOCODataset:
    format = "coco"

    def __init__(self, coco, classes, label_to_category_id, image_ids=None):
        self.coco = coco
        self.classes = list(classes)
        self.label_to_category_id = dict(label_to_category_id)
        self.image_ids = list(image_ids) if image_ids is not None else sorted(coco.imgs)
        self._cat_to_label = {c: k for k, c in self.label_to_category_id.items()}

    def __len__(self):
        return len(self.image_ids)

    def ground_truth(self, i):
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[self.image_ids[i]]))
        boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                 for a in anns]
        return {
            "image_id": self.image_ids[i],
            "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "labels": np.asarray([self._cat_to_label[a["category_id"]] for a in anns], np.int64),
            "difficult": np.asarray([bool(a.get("iscrowd", 0)) for a in anns], bool),
        }


# COCO ground truth with non-contiguous category ids; one object of each size range
# (small < 32^2 <= medium < 96^2 <= large) so that every summary metric is defined.
COCO_GT = {
    "images": [{"id": 1, "width": 640, "height": 480, "file_name": "a.jpg"},
               {"id": 7, "width": 640, "height": 480, "file_name": "b.jpg"}],
    "categories": [{"id": 3, "name": "cat"}, {"id": 10, "name": "dog"}, {"id": 42, "name": "bird"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 10, "bbox": [100, 100, 50, 60], "area": 3000, "iscrowd": 0},
        {"id": 3, "image_id": 7, "category_id": 3, "bbox": [50, 50, 200, 150], "area": 30000, "iscrowd": 0},
        {"id": 4, "image_id": 7, "category_id": 10, "bbox": [300, 200, 120, 100], "area": 12000, "iscrowd": 0},
    ],
}


@pytest.fixture
def coco_gt(tmp_path, capsys):
    from pycocotools.coco import COCO

    path = tmp_path / "gt.json"
    path.write_text(json.dumps(COCO_GT))
    coco = COCO(str(path))
    capsys.readouterr()  # drop pycocotools' loading chatter
    return coco


@pytest.fixture
def fake_voc_dataset():
    return FakeVOCDataset


@pytest.fixture
def fake_coco_dataset():
    return FakeCOCODataset


@pytest.fixture
def coco_gt_dict():
    return json.loads(json.dumps(COCO_GT))
