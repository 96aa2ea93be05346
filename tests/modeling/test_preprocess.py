"""On-device resizing and padding: sizes, exact box scaling, and the way back to original coordinates."""
import torch

from frcnn.modeling.detector import to_original_coordinates
from frcnn.modeling.preprocess import Preprocessor
from frcnn.modeling.structures import Detections


def make(min_size=(600,), max_size=1000):
    return Preprocessor(min_size=min_size, max_size=max_size, pixel_mean=(0.5, 0.5, 0.5), pixel_std=(0.25, 0.25, 0.25))


def test_shortest_side_to_min_size_unless_longest_exceeds_max():
    pre = make()
    assert pre.resized_size(300, 400, 600) == (600, 800)  # x2
    assert pre.resized_size(300, 900, 600) == (333, 1000)  # x2 would give 1800 > 1000: x1000/900 instead
    assert pre.resized_size(500, 375, 600) == (800, 600)


def test_resize_moves_boxes_exactly_and_pads_to_multiple_of_32():
    pre = make().eval()
    images = [torch.rand(3, 300, 400), (torch.rand(3, 500, 375) * 255).to(torch.uint8)]
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 110.0, 220.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    batch, gt = pre(images, targets)
    assert batch.tensor.shape == (2, 3, 800, 800)  # max(600, 800) x max(800, 600), already multiples of 32
    assert batch.image_sizes.tolist() == [[600, 800], [800, 600]]
    torch.testing.assert_close(batch.scales, torch.tensor([[2.0, 2.0], [1.6, 1.6]]))
    torch.testing.assert_close(gt.boxes[0, 0], torch.tensor([20.0, 40.0, 220.0, 440.0]))
    assert gt.valid.tolist() == [[True], [False]] and gt.labels.tolist() == [[1], [0]]
    # Normalised with the given mean/std (the corner pixel survives bilinear x2 exactly); padding stays 0.
    torch.testing.assert_close(batch.tensor[0, :, 0, 0], (images[0][:, 0, 0] - 0.5) / 0.25, atol=1e-5, rtol=0)
    assert batch.tensor[0, :, 600:, :].abs().sum() == 0


def test_detections_map_back_to_original_pixels():
    pre = make().eval()
    batch, _ = pre([torch.rand(3, 300, 450)])
    scale_y, scale_x = batch.scales[0].tolist()
    # The second box reaches a hair beyond the image (rounding of the resized size): clipped to 450 x 300.
    boxes = torch.tensor([[[30.0 * scale_x, 60.0 * scale_y, 300.0 * scale_x, 299.0 * scale_y],
                           [-0.5, 10.0 * scale_y, 450.4 * scale_x, 300.2 * scale_y]]])
    detections = Detections(boxes=boxes, scores=torch.tensor([[0.9, 0.8]]), labels=torch.tensor([[1, 2]]),
                            valid=torch.tensor([[True, True]]))
    mapped = to_original_coordinates(detections, batch).boxes[0]
    torch.testing.assert_close(mapped, torch.tensor([[30.0, 60.0, 300.0, 299.0], [0.0, 10.0, 450.0, 300.0]]))
