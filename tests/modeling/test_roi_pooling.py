"""ROI pooling keeps box coordinates in float32 whatever the features' dtype (bf16 would round them to 4 px)."""
import pytest
import torch

import frcnn


@pytest.mark.parametrize("pooler", ["align", "pool"])
def test_bf16_features_are_pooled_at_the_exact_float32_boxes(small_config, pooler):
    roi_heads = frcnn.build_model(small_config("backbone=resnet18", "dataset.classes=[a]",
                                               f"model.roi.pooler={pooler}")).roi_heads
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(1, 8, 64, 64, generator=generator).bfloat16()  # a 1024 x 1024 px input at stride 16
    # Near 1000 px, bfloat16 can only hold multiples of 4: 901.3 would become 900, 1013.9 would become 1012.
    rois = torch.tensor([[[901.3, 905.7, 1010.2, 1013.9], [13.1, 250.6, 611.8, 998.3]]])
    pooled = roi_heads.pool(features, rois)
    expected = roi_heads.pool(features.float(), rois)  # the same features, computed in float32 throughout
    assert pooled.dtype == torch.bfloat16 and pooled.shape == expected.shape
    torch.testing.assert_close(pooled.float(), expected, rtol=1e-2, atol=1e-2)


def test_pooling_under_bf16_autocast_matches_float32(small_config):
    roi_heads = frcnn.build_model(small_config("backbone=resnet18", "dataset.classes=[a]")).roi_heads
    features = torch.randn(1, 8, 64, 64).bfloat16().float()
    rois = torch.tensor([[[901.3, 905.7, 1010.2, 1013.9]]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled = roi_heads.pool(features.bfloat16(), rois)
    torch.testing.assert_close(pooled.float(), roi_heads.pool(features, rois), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("pooler", ["align", "pool"])
def test_pooling_split_over_threads_gives_the_same_features_and_gradients(pooler):
    from torchvision.ops import roi_align, roi_pool

    from frcnn.modeling import pooling

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 6, 20, 30, generator=generator).contiguous(memory_format=torch.channels_last)
    features.requires_grad_(True)
    corners = torch.rand(70, 2, generator=generator) * torch.tensor([400.0, 250.0])
    boxes = torch.cat([corners, corners + 8 + torch.rand(70, 2, generator=generator) * 60], dim=1)
    rois = torch.cat([torch.randint(0, 2, (70, 1), generator=generator).float(), boxes], dim=1)
    if pooler == "align":
        expected = roi_align(features, rois, 7, 1 / 16, 2, aligned=True)
    else:
        expected = roi_pool(features, rois, 7, 1 / 16)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), features)

    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert pooling._useful_threads(features, rois) == 3  # 70 ROIs: three chunks of 23-24
        pooled = pooling.pool_rois(features, rois, pooler=pooler, output_size=7, spatial_scale=1 / 16,
                                   sampling_ratio=2)
    finally:
        torch.set_num_threads(threads)
    (grad,) = torch.autograd.grad(pooled.square().sum(), features)
    torch.testing.assert_close(pooled, expected, rtol=0, atol=0)  # each ROI is pooled by the same kernel
    torch.testing.assert_close(grad, expected_grad, rtol=1e-6, atol=1e-6)  # summed over chunks: rounding only


def test_threaded_pooling_takes_boxes_and_features_of_other_dtypes():
    """torchvision's proposals are bf16 under CPU autocast; the worker threads run without autocast."""
    from frcnn.modeling import pooling

    features = torch.randn(1, 4, 16, 16).bfloat16()
    rois = torch.cat([torch.zeros(40, 1), torch.tensor([[8.0, 8.0, 120.0, 100.0]]).repeat(40, 1)], dim=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pooled = pooling.pool_rois(features, rois.bfloat16(), pooler="align", output_size=7,
                                       spatial_scale=1 / 16, sampling_ratio=2)
    finally:
        torch.set_num_threads(threads)
    assert pooled.dtype == torch.bfloat16 and pooled.shape == (40, 4, 7, 7)
