"""The synthetic shapes generator: deterministic, both formats agree, empty images, difficult and small objects."""
import multiprocessing as mp
from pathlib import Path

import pytest
import torch

from frcnn.data.coco import COCODataset
from frcnn.data.shapes import MARKER, SHAPE_KINDS, ShapesSettings, generate_shapes, settings_hash
from frcnn.data.voc import VOCDataset

from helpers import data as tiny


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path, shapes_root):
    again = generate_shapes(tmp_path / "again", tiny.SMALL_SHAPES, verbose=False)
    a, b = _files(shapes_root), _files(again)
    assert a.keys() == b.keys()
    assert sum(k.startswith("JPEGImages/") for k in a) == 14 and sum(k.startswith("Annotations/") for k in a) == 14
    assert {"annotations/train.json", "annotations/val.json", "annotations/test.json", MARKER,
            "ImageSets/Main/train.txt", "ImageSets/Main/val.txt", "ImageSets/Main/test.txt"} <= a.keys()
    assert all(a[k] == b[k] for k in a)
    other = generate_shapes(tmp_path / "other", dict(tiny.SMALL_SHAPES, seed=4), verbose=False)
    assert (other / "JPEGImages" / "000001.jpg").read_bytes() != a["JPEGImages/000001.jpg"]


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_voc_and_coco_loaders_agree(shapes_root, split):
    voc = VOCDataset(shapes_root, [split], list(SHAPE_KINDS), train=False)
    coco = COCODataset(shapes_root / "annotations" / f"{split}.json", shapes_root / "JPEGImages", train=False)
    assert coco.classes == voc.classes == list(SHAPE_KINDS)
    assert [int(i) for i in voc.image_ids] == coco.image_ids
    for i in range(len(voc)):
        assert voc.image_path(i) == coco.image_path(i) and voc.image_size(i) == coco.image_size(i)
        a, b = voc.ground_truth(i), coco.ground_truth(i)
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["labels"], b["labels"])
        assert torch.equal(a["difficult"], b["difficult"])


def _all_objects(root):
    out = []
    for split in ("train", "val", "test"):
        ds = VOCDataset(root, [split], list(SHAPE_KINDS), train=False)
        out += [(ds.image_size(i), ds.ground_truth(i)) for i in range(len(ds))]
    return out


def test_content_empty_images_difficult_objects_sizes(shapes_root):
    items = _all_objects(shapes_root)
    counts = [len(gt["labels"]) for _, gt in items]
    assert 0 in counts and max(counts) >= 2  # some images are empty, others hold several objects
    difficult = torch.cat([gt["difficult"] for _, gt in items])
    assert 0 < difficult.sum() < len(difficult)
    boxes = torch.cat([gt["boxes"] for _, gt in items])
    sides = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert sides.min() <= 24 and sides.max() >= 64  # small to large
    assert set(torch.cat([gt["labels"] for _, gt in items]).tolist()) == {1, 2, 3}
    for (h, w), gt in items:  # inside the image, positive area, integer pixel edges
        b = gt["boxes"]
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= h).all()
        assert ((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all() and torch.equal(b, b.round())
    sizes = {hw for hw, _ in items}
    assert any(h > w for h, w in sizes) and any(w > h for h, w in sizes)  # both orientations


def test_images_are_textured(shapes_root):
    ds = VOCDataset(shapes_root, ["train"], list(SHAPE_KINDS), train=False)
    image, _ = ds[0]
    assert image.dtype == torch.uint8 and image.float().std() > 10  # textured, not flat


def test_marker_and_regeneration(tmp_path):
    root = tmp_path / "s"
    settings = dict(tiny.SMALL_SHAPES, num_train=2, num_val=1, num_test=1)
    generate_shapes(root, settings, verbose=False)
    assert (root / MARKER).read_text().strip() == settings_hash(ShapesSettings.from_config(settings),
                                                                list(SHAPE_KINDS))
    stamp = (root / "JPEGImages" / "000001.jpg").stat().st_mtime_ns
    generate_shapes(root, settings, verbose=False)  # complete: nothing rewritten
    assert (root / "JPEGImages" / "000001.jpg").stat().st_mtime_ns == stamp
    generate_shapes(root, dict(settings, num_train=3), verbose=False)  # other settings: regenerated
    assert len(list((root / "JPEGImages").iterdir())) == 5
    (root / MARKER).unlink()  # as if interrupted / foreign: refuse to overwrite a folder we did not make
    with pytest.raises(FileExistsError, match=str(root)):
        generate_shapes(root, settings, verbose=False)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".s.tmp")]  # no temp folder left behind
    (tmp_path / ".s.tmp-1-dead").mkdir()  # an interrupted run's leftovers are cleaned up by the next one
    (root / MARKER).write_text("other\n")
    generate_shapes(root, settings, verbose=False)
    assert not (tmp_path / ".s.tmp-1-dead").exists()


def _generate(root, settings, queue):
    try:
        generate_shapes(root, settings, verbose=False)
        queue.put("ok")
    except Exception as e:  # pragma: no cover - reported to the parent
        queue.put(repr(e))


def test_two_processes_at_once(tmp_path):
    root = tmp_path / "race"
    settings = dict(tiny.SMALL_SHAPES, num_train=3, num_val=1, num_test=1)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_generate, args=(root, settings, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sorted(queue.get(timeout=5) for _ in procs) == ["ok", "ok"]
    assert len(list((root / "JPEGImages").iterdir())) == 5
    assert [p.name for p in tmp_path.iterdir() if p.name != "race"] == [".race.lock"]


def test_settings_from_config_dataclass():
    from frcnn.config import ShapesConfig

    s = ShapesSettings.from_config(ShapesConfig(num_train=7))
    assert s.num_train == 7 and s.seed == 0
    with pytest.raises(ValueError, match="classes"):
        generate_shapes("/nonexistent/never", s, ["hexagon"])
