"""Segmentation data sets: the offline ``DigitCanvas`` and ``ShapeScenes`` and readers for
Cityscapes, CamVid and SYNTHIA-SF folder layouts, plus paired transforms."""

from .digits import DigitCanvas
from .folders import CamVid, Cityscapes, FolderSegmentation, SynthiaSF
from .scenes import ShapeScenes
from .transforms import PairedTransform

__all__ = ["DigitCanvas", "ShapeScenes", "Cityscapes", "CamVid", "SynthiaSF", "FolderSegmentation",
           "PairedTransform"]
