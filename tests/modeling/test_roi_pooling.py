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
