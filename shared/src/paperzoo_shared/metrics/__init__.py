"""Evaluation metrics shared by the paper packages, each following a named reference convention.

image (BasicSR 1.4.2 PSNR/SSIM):
    rgb_to_y, psnr, ssim, psnr_torch, ssim_torch
correlation (IQA-PyTorch SRCC/KRCC/PLCC, VQEG 4-parameter logistic):
    srcc, krcc, plcc, fit_logistic4, summarize_splits
detection (py-faster-rcnn/HUWSOD VOC AP and CorLoc, pycocotools COCO AP):
    GroundTruthBox, Detection, voc_ap, voc_eval_class, voc_map, voc_ap_range, corloc,
    voc_box_to_coco_xywh, voc_to_coco, coco_eval
text (ROUGE-L: plain LCS, and the pltrdy ``rouge`` package used by VEGA):
    rouge_l, rouge_l_corpus
classification (multiple-choice accuracy with breakdowns, Video-MME unparsed rule):
    multiple_choice_accuracy
stats (seeds and splits: mean/std, paired or Welch t intervals for a difference):
    mean_std, difference_ci

Scales: accuracies, AP and correlations are fractions; CorLoc is a percentage; PSNR is in dB.
"""

from paperzoo_shared.metrics.classification import multiple_choice_accuracy
from paperzoo_shared.metrics.correlation import fit_logistic4, krcc, plcc, srcc, summarize_splits
from paperzoo_shared.metrics.detection import (
    Detection,
    GroundTruthBox,
    coco_eval,
    corloc,
    voc_ap,
    voc_ap_range,
    voc_box_to_coco_xywh,
    voc_eval_class,
    voc_map,
    voc_to_coco,
)
from paperzoo_shared.metrics.image import psnr, psnr_torch, rgb_to_y, ssim, ssim_torch
from paperzoo_shared.metrics.stats import difference_ci, mean_std
from paperzoo_shared.metrics.text import rouge_l, rouge_l_corpus

__all__ = [
    "Detection",
    "GroundTruthBox",
    "coco_eval",
    "corloc",
    "difference_ci",
    "fit_logistic4",
    "krcc",
    "mean_std",
    "multiple_choice_accuracy",
    "plcc",
    "psnr",
    "psnr_torch",
    "rgb_to_y",
    "rouge_l",
    "rouge_l_corpus",
    "srcc",
    "ssim",
    "ssim_torch",
    "summarize_splits",
    "voc_ap",
    "voc_ap_range",
    "voc_box_to_coco_xywh",
    "voc_eval_class",
    "voc_map",
    "voc_to_coco",
]
