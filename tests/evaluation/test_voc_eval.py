"""Pascal VOC AP: hand-computed cases for both rules and a literal port of the devkit as a cross-check."""
import math

import numpy as np
import pytest
import torch

from frcnn.evaluation import evaluate_voc, voc_ap

# ---------------------------------------------------------------------------------------------------- voc_ap


def test_voc_ap_hand_computed_both_rules():
    rec = [0.2, 0.4, 0.4, 0.6]
    prec = [1.0, 1.0, 0.67, 0.75]
    # 11-point: max precision at recall >= t
    #   t = 0.0, 0.1, 0.2       -> max(1, 1, .67, .75) = 1         (3 points)
    #   t = 0.3, 0.4            -> max over rec >= .4 = 1          (2 points)
    #   t = 0.5, 0.6            -> only rec = .6 -> .75            (2 points)
    #   t = 0.7 .. 1.0          -> nothing reaches t -> 0          (4 points)
    #   AP = (5 * 1 + 2 * .75) / 11 = 6.5 / 11
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx(6.5 / 11)
    # area: mrec = [0, .2, .4, .4, .6, 1], mpre = [0, 1, 1, .67, .75, 0] -> envelope [1, 1, 1, .75, .75, 0]
    #   recall steps: 0->.2 at p=1, .2->.4 at p=1, .4->.6 at p=.75, .6->1 at p=0
    #   AP = .2 + .2 + .2 * .75 = 0.55
    assert voc_ap(rec, prec, use_07_metric=False) == pytest.approx(0.55)


def test_voc_ap_envelope_raises_precision():
    # FP first, then two TPs of two gts: rec [0, .5, 1], prec [0, .5, 2/3].
    # Raw precision at the step 0 -> .5 is .5, but the envelope (max precision at any higher recall) is 2/3:
    # AP = .5 * 2/3 + .5 * 2/3 = 2/3 (it would be .5 * .5 + .5 * 2/3 = 0.583 without the envelope).
    rec, prec = [0.0, 0.5, 1.0], [0.0, 0.5, 2 / 3]
    assert voc_ap(rec, prec, use_07_metric=False) == pytest.approx(2 / 3)
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx(2 / 3)  # every t: max over later points


def test_voc_ap_11_point_thresholds_are_exact_tenths():
    # recall exactly 0.3 (e.g. 3 of 10) reaches t = 0, .1, .2, .3: AP = 4/11.
    # (np.arange(0, 1.1, .1)[3] == 0.30000000000000004 would drop t = .3 and give 3/11.)
    assert voc_ap([3 / 10], [1.0], use_07_metric=True) == pytest.approx(4 / 11)
    assert voc_ap([3 / 5], [1.0], use_07_metric=True) == pytest.approx(7 / 11)


def test_voc_ap_empty_is_zero():
    assert voc_ap([], [], use_07_metric=True) == 0.0
    assert voc_ap([], [], use_07_metric=False) == 0.0


# ------------------------------------------------------------------------------------------------ evaluate_voc


def gt(boxes, labels, difficult=None):
    d = {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "labels": np.asarray(labels, np.int64)}
    if difficult is not None:
        d["difficult"] = np.asarray(difficult, bool)
    return d


def det(boxes, labels, scores):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "scores": torch.tensor(scores, dtype=torch.float32)}


G1, G2 = [0, 0, 10, 10], [20, 20, 30, 30]
FAR = [50, 50, 60, 60]
BOTH = {True: 28 / 33, False: 5 / 6}
# BOTH: rec [.5, .5, 1], prec [1, .5, 2/3]
#   07:   t = 0 .. .5 -> 1 (6 points), t = .6 .. 1 -> 2/3 (5 points): (6 + 10/3) / 11 = 28/33
#   area: envelope [1, 1, 2/3, 2/3]: .5 * 1 + .5 * 2/3 = 5/6


@pytest.mark.parametrize("use07", [True, False])
def test_perfect_detections(use07):
    gts = [gt([G1, G2], [1, 2]), gt([G2], [2])]
    dets = [det([G2, G1], [2, 1], [0.8, 0.9]), det([G2], [2], [0.7])]
    out = evaluate_voc(gts, dets, ["a", "b"], use_07_metric=use07)
    assert out == {"mAP": pytest.approx(1.0), "per_class": {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}}


@pytest.mark.parametrize("use07", [True, False])
def test_false_positive_between_true_positives(use07):
    gts = [gt([G1, G2], [1, 1])]
    dets = [det([G1, FAR, G2], [1, 1, 1], [0.9, 0.8, 0.7])]
    out = evaluate_voc(gts, dets, ["a"], use_07_metric=use07)
    assert out["per_class"]["a"] == pytest.approx(BOTH[use07])
    assert out["mAP"] == pytest.approx(BOTH[use07])


@pytest.mark.parametrize("use07", [True, False])
def test_false_positive_ranked_first(use07):
    # rec [0, .5, 1], prec [0, .5, 2/3] -> 2/3 for both rules (see test_voc_ap_envelope_raises_precision)
    gts = [gt([G1, G2], [1, 1])]
    dets = [det([G1, G2, FAR], [1, 1, 1], [0.8, 0.7, 0.95])]  # input order must not matter, scores do
    out = evaluate_voc(gts, dets, ["a"], use_07_metric=use07)
    assert out["per_class"]["a"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("use07", [True, False])
def test_duplicate_detection_is_false_positive(use07):
    # the second detection of G1 (score .8) is a duplicate: same curve as an FP between two TPs
    gts = [gt([G1, G2], [1, 1])]
    dets = [det([G1, [0.5, 0, 10, 10], G2], [1, 1, 1], [0.9, 0.8, 0.7])]
    assert evaluate_voc(gts, dets, ["a"], use_07_metric=use07)["mAP"] == pytest.approx(BOTH[use07])


@pytest.mark.parametrize("use07", [True, False])
def test_best_overlap_already_taken_is_false_positive_not_second_choice(use07):
    # g1 = (0,0,10,10), g2 = (0,2,10,12). d2 = (0,0,10,10.5): IoU 100/105 = .95 with g1 (already taken by d1),
    # 85/120 = .71 with g2. The devkit keeps the best-overlap gt, so d2 is a duplicate (FP), not a TP on g2:
    # rec [.5, .5], prec [1, .5] -> 07: 6/11 (t = 0 .. .5), area: .5 * 1 = .5
    gts = [gt([[0, 0, 10, 10], [0, 2, 10, 12]], [1, 1])]
    dets = [det([[0, 0, 10, 10], [0, 0, 10, 10.5]], [1, 1], [0.9, 0.8])]
    expected = 6 / 11 if use07 else 0.5
    assert evaluate_voc(gts, dets, ["a"], use_07_metric=use07)["mAP"] == pytest.approx(expected)


@pytest.mark.parametrize("use07", [True, False])
def test_difficult_gt_is_ignored(use07):
    hard = [100, 100, 140, 140]
    gts = [gt([G1, hard], [1, 1], difficult=[False, True])]
    with_hard_det = [det([hard, G1], [1, 1], [0.9, 0.8])]
    without = [det([G1], [1], [0.8])]
    a = evaluate_voc(gts, with_hard_det, ["a"], use_07_metric=use07)["mAP"]
    b = evaluate_voc(gts, without, ["a"], use_07_metric=use07)["mAP"]
    # npos = 1 (difficult not counted) and the detection on the difficult box is neither TP nor FP:
    # counting it as FP would give .5 (07: rec [0, 1], prec [0, .5]); counting the gt would give recall .5.
    assert a == pytest.approx(1.0)
    assert b == pytest.approx(1.0)
    # a detection on a difficult gt only: nothing to find, nothing wrong -> the class still has npos = 1, AP 0
    assert evaluate_voc(gts, [det([hard], [1], [0.9])], ["a"], use_07_metric=use07)["mAP"] == 0.0


@pytest.mark.parametrize("use07", [True, False])
def test_iou_threshold_with_inclusive_pixels(use07):
    # gt: XML (1, 1, 10, 10) -> continuous (0, 0, 10, 10), 10 x 10 pixels.
    g = [gt([[0, 0, 10, 10]], [1])]
    # det continuous (0, 0, 10, 5) -> devkit (1, 1, 10, 5): 10 x 5 = 50 inclusive pixels, IoU 50/100 = 0.5
    # exactly; the devkit's test is ovmax >= 0.5, so TP (py-faster-rcnn's '>' would call it an FP).
    exact = evaluate_voc(g, [det([[0, 0, 10, 5]], [1], [0.9])], ["a"], use_07_metric=use07)
    assert exact["mAP"] == pytest.approx(1.0)
    # det continuous (0, 0, 10, 4.9) -> devkit (1, 1, 10, 4.9): IoU 49/100 = 0.49 -> FP, AP 0.
    # Applying the inclusive +1 widths to the 0-based boxes without converting them back would compute
    # (11 * 5.9) / (11 * 11) = 0.536 and wrongly call it a TP.
    below = evaluate_voc(g, [det([[0, 0, 10, 4.9]], [1], [0.9])], ["a"], use_07_metric=use07)
    assert below["mAP"] == 0.0
    # iou_thresh is honoured
    lenient = evaluate_voc(g, [det([[0, 0, 10, 4.9]], [1], [0.9])], ["a"], use_07_metric=use07, iou_thresh=0.45)
    assert lenient["mAP"] == pytest.approx(1.0)


@pytest.mark.parametrize("use07", [True, False])
def test_detections_sorted_over_the_whole_set(use07):
    # image 0: FP (.9) and TP (.5); image 1: TP (.95). Global order TP, FP, TP -> BOTH.
    # (Sorting within images would give FP, TP, TP -> 2/3.)
    gts = [gt([G1], [1]), gt([G2], [1])]
    dets = [det([FAR, G1], [1, 1], [0.9, 0.5]), det([G2], [1], [0.95])]
    assert evaluate_voc(gts, dets, ["a"], use_07_metric=use07)["mAP"] == pytest.approx(BOTH[use07])


def test_detection_in_other_image_or_class_does_not_match():
    gts = [gt([G1], [1]), gt([], [])]
    dets = [det([G1], [2], [0.9]), det([G1], [1], [0.8])]  # right box, wrong class / wrong image
    out = evaluate_voc(gts, dets, ["a", "b"], use_07_metric=False)
    assert out["per_class"]["a"] == 0.0
    assert math.isnan(out["per_class"]["b"])  # no ground truth for b


def test_class_without_detections_and_class_without_ground_truth():
    gts = [gt([G1, G2], [1, 2])]
    dets = [det([G1, FAR], [1, 3], [0.9, 0.8])]  # nothing for class b; class c has no ground truth
    out = evaluate_voc(gts, dets, ["a", "b", "c"], use_07_metric=True)
    assert out["per_class"]["a"] == pytest.approx(1.0)
    assert out["per_class"]["b"] == 0.0
    assert math.isnan(out["per_class"]["c"])
    assert out["mAP"] == pytest.approx(0.5)  # mean over a and b; c left out


def test_empty_inputs_and_numpy_detections():
    gts = [gt([G1], [1]), gt(np.zeros((0, 4)), [])]
    dets = [{"boxes": np.array([G1], np.float64), "labels": np.array([1]), "scores": np.array([0.3])},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}]
    assert evaluate_voc(gts, dets, ["a"], use_07_metric=True)["mAP"] == pytest.approx(1.0)
    none = evaluate_voc([gt([], [])], [det([], [], [])], ["a"], use_07_metric=True)
    assert math.isnan(none["mAP"]) and math.isnan(none["per_class"]["a"])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="labels must lie in 1..1"):
        evaluate_voc([gt([G1], [1])], [det([G1], [2], [0.9])], ["a"], use_07_metric=True)
    with pytest.raises(ValueError, match="ground-truth entries"):
        evaluate_voc([gt([G1], [1])], [], ["a"], use_07_metric=True)


# ------------------------------------------------------------------- cross-check against a literal devkit port


def devkit_reference(gts, dets, num_classes, use07, thresh=0.5):
    """Line-by-line port of VOCevaldet.m / VOCap.m (per-detection loops, 1-based inclusive boxes)."""
    aps = []
    for c in range(1, num_classes + 1):
        npos, gtc = 0, []
        for g in gts:
            m = g["labels"] == c
            bb = g["boxes"][m].astype(np.float64) + [1, 1, 0, 0]
            diff = g["difficult"][m]
            npos += int((~diff).sum())
            gtc.append({"BB": bb, "diff": diff, "det": np.zeros(len(bb), bool)})
        ids, conf, boxes = [], [], []
        for i, d in enumerate(dets):
            m = d["labels"] == c
            ids += [i] * int(m.sum())
            conf += d["scores"][m].tolist()
            boxes += (d["boxes"][m].astype(np.float64) + [1, 1, 0, 0]).tolist()
        si = np.argsort(-np.asarray(conf), kind="stable")
        tp, fp = np.zeros(len(si)), np.zeros(len(si))
        for d, k in enumerate(si):
            g, bb = gtc[ids[k]], boxes[k]
            ovmax, jmax = -np.inf, -1
            for j, bbgt in enumerate(g["BB"]):
                iw = min(bb[2], bbgt[2]) - max(bb[0], bbgt[0]) + 1
                ih = min(bb[3], bbgt[3]) - max(bb[1], bbgt[1]) + 1
                if iw > 0 and ih > 0:
                    ua = (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + (bbgt[2] - bbgt[0] + 1) * (
                        bbgt[3] - bbgt[1] + 1) - iw * ih
                    ov = iw * ih / ua
                    if ov > ovmax:
                        ovmax, jmax = ov, j
            if ovmax >= thresh:
                if g["diff"][jmax]:
                    pass
                elif not g["det"][jmax]:
                    tp[d] = 1
                    g["det"][jmax] = True
                else:
                    fp[d] = 1
            else:
                fp[d] = 1
        if npos == 0:
            continue
        fp, tp = np.cumsum(fp), np.cumsum(tp)
        rec = tp / npos
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        if use07:
            ap = sum((prec[rec >= t].max() if (rec >= t).any() else 0.0) for t in np.arange(11) / 10) / 11
        else:
            mrec, mpre = np.r_[0, rec, 1], np.r_[0, prec, 0]
            for i in range(len(mpre) - 2, -1, -1):
                mpre[i] = max(mpre[i], mpre[i + 1])
            i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
            ap = float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))
        aps.append(ap)
    return float(np.mean(aps))


@pytest.mark.parametrize("use07", [True, False])
def test_matches_literal_devkit_port_on_random_data(use07):
    rng = np.random.default_rng(0)
    num_classes, gts, dets = 3, [], []
    for _ in range(12):
        m = int(rng.integers(0, 6))
        xy = rng.uniform(0, 80, (m, 2)).round()
        wh = rng.uniform(5, 40, (m, 2)).round()
        gboxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        glabels = rng.integers(1, num_classes + 1, m)
        gts.append({"boxes": gboxes, "labels": glabels, "difficult": rng.random(m) < 0.2})
        # detections: jittered copies (some duplicated), random boxes, some wrong labels; tied scores too
        src = rng.integers(0, max(m, 1), int(rng.integers(0, 10))) if m else np.zeros(0, int)
        jit = gboxes[src] + rng.normal(0, 3, (len(src), 4)).astype(np.float32) if m else np.zeros((0, 4))
        rand_xy = rng.uniform(0, 80, (3, 2))
        rand = np.concatenate([rand_xy, rand_xy + rng.uniform(5, 40, (3, 2))], 1)
        dboxes = np.concatenate([jit, rand]).astype(np.float32)
        dlabels = np.concatenate([glabels[src] if m else np.zeros(0, int), rng.integers(1, num_classes + 1, 3)])
        flip = rng.random(len(dlabels)) < 0.1
        dlabels[flip] = rng.integers(1, num_classes + 1, int(flip.sum()))
        dscores = rng.choice([0.1, 0.3, 0.5, 0.7, 0.9], len(dlabels)).astype(np.float32)
        dets.append({"boxes": dboxes, "labels": dlabels.astype(np.int64), "scores": dscores})
    ours = evaluate_voc(gts, dets, ["a", "b", "c"], use_07_metric=use07)
    ref = devkit_reference(gts, dets, num_classes, use07)
    assert 0.05 < ref < 0.99  # a non-trivial case
    assert ours["mAP"] == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("use07", [True, False])
def test_overlap_ties_go_to_the_first_gt(use07):
    # Two identical gt boxes: the devkit's `if ov > ovmax` keeps the first one on a tie.
    # difficult first: the detection takes the difficult box and is ignored -> npos 1, no TP -> AP 0
    hard_first = [gt([G1, G1], [1, 1], difficult=[True, False])]
    assert evaluate_voc(hard_first, [det([G1], [1], [0.9])], ["a"], use_07_metric=use07)["mAP"] == 0.0
    # difficult second: the detection takes the normal box -> AP 1
    hard_second = [gt([G1, G1], [1, 1], difficult=[False, True])]
    assert evaluate_voc(hard_second, [det([G1], [1], [0.9])], ["a"], use_07_metric=use07)["mAP"] == 1.0
    # two identical normal boxes and two identical detections: both detections pick the first box, so the
    # second is a duplicate (FP): rec [.5, .5], prec [1, .5] -> 07: 6/11, area: .5
    twins = [gt([G1, G1], [1, 1])]
    out = evaluate_voc(twins, [det([G1, G1], [1, 1], [0.9, 0.8])], ["a"], use_07_metric=use07)
    assert out["mAP"] == pytest.approx(6 / 11 if use07 else 0.5)
