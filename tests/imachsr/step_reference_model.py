"""The fixed model, batch and configurations behind ``data/step_reference.pt``: loss, logged terms
and every gradient of one iMacHSR step, recorded with the implementation at commit 6546166 (per-sample
negative-entropy loops, label checks on the host). The vectorised step must reproduce them."""

import torch
from torch import nn
from torch.nn import functional as F

import imachsr

CLASSES = 4
CONFIGURATIONS = {
    "joint-feature": {},
    "joint-label": {"resolution": "label"},
    "joint-normalised": {"normalize_mi": True, "tau": 2.0},
    "variational": {"mi": "variational"},
    "ce": {"mi": "ce"},
    "ne-on-adapter": {"ne_on": "adapter", "beta": 0.1},
}


class Segmenter(nn.Module):
    """Three stages at 1/2, 1/4 and 1/8 and a head upsampled to the input size."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.stage1 = nn.Sequential(nn.Conv2d(8, 12, 3, 2, 1), nn.BatchNorm2d(12), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(12, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.GELU())
        self.head = nn.Conv2d(16, CLASSES, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stage2(self.stage1(self.stem(x)))
        return F.interpolate(self.head(features), size=x.shape[-2:], mode="bilinear")


def reference_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(3, 3, 24, 24, generator=generator)
    y = torch.randint(0, CLASSES, (3, 24, 24), generator=generator)
    y[0, :5] = 255
    y[2] = 255  # an image with no valid pixel
    y[2, 0, 0] = 1  # ... but one
    return x, y


def reference_scheme(**options) -> imachsr.IMacHSR:
    torch.manual_seed(0)
    model = Segmenter()
    # The options of commit 6546166's defaults, named: the defaults have changed since.
    settings = {"taps": ["stem", "stage1", "stage2"], "alpha": [0.4, 0.3, 0.2],
                "beta": [0.01, 0.02, 0.03], "mi": "joint", "adapter": "linear",
                "schedule": "constant", **options}
    scheme = imachsr.IMacHSR(model, CLASSES, example_inputs=(3, 3, 24, 24), **settings)
    return scheme
