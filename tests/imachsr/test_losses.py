"""The loss terms against their definitions (DESIGN.md, "The paper in equations")."""

import math

import pytest
import torch
from torch.nn import functional as F

from imachsr.losses import (
    information_loss,
    label_statistics,
    mutual_information_loss,
    negative_entropy,
)

JOINT = "joint-image"  # this project's per-image estimator


def confident(labels: torch.Tensor, classes: int, permutation=None) -> torch.Tensor:
    """Logits ``(B, K, H, W)`` predicting ``permutation[label]`` with near certainty."""
    mapped = labels if permutation is None else torch.as_tensor(permutation)[labels]
    return torch.nn.functional.one_hot(mapped, classes).permute(0, 3, 1, 2).float() * 40


def label_entropy(labels: torch.Tensor, classes: int) -> float:
    counts = torch.bincount(labels.flatten(), minlength=classes).float()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def hand_joint_mi(logits: torch.Tensor, labels: torch.Tensor, ignore: int) -> float:
    """The per-image joint estimator with plain loops: P(c, k) = mean over valid pixels of onehot(y)_c * softmax_k."""
    classes = logits.shape[1]
    values = []
    for b in range(logits.shape[0]):
        probs = logits[b].softmax(0).reshape(classes, -1).t().tolist()
        ys = labels[b].flatten().tolist()
        pixels = [(y, p) for y, p in zip(ys, probs) if y != ignore]
        if not pixels:
            continue
        joint = [[0.0] * classes for _ in range(classes)]
        for y, p in pixels:
            for k in range(classes):
                joint[y][k] += p[k] / len(pixels)
        pc = [sum(row) for row in joint]
        pk = [sum(joint[c][k] for c in range(classes)) for k in range(classes)]
        values.append(sum(
            joint[c][k] * math.log(joint[c][k] / (pc[c] * pk[k]))
            for c in range(classes) for k in range(classes) if joint[c][k] > 0
        ))
    return sum(values) / len(values)


def test_perfect_prediction_has_mi_equal_to_label_entropy_even_when_permuted():
    labels = torch.tensor([[[0, 1, 2, 2], [0, 0, 1, 2]]])
    for permutation in (None, [2, 0, 1]):
        loss = mutual_information_loss(confident(labels, 3, permutation), labels, estimator=JOINT)
        assert float(-loss) == pytest.approx(label_entropy(labels, 3), abs=1e-4)
        normalised = mutual_information_loss(confident(labels, 3, permutation), labels,
                                             estimator=JOINT, normalize=True)
        assert float(-normalised) == pytest.approx(1.0, abs=1e-4)


def test_constant_prediction_has_zero_mi():
    labels = torch.randint(0, 4, (2, 5, 5))
    logits = torch.randn(1, 4, 1, 1).expand(2, 4, 5, 5)
    assert float(mutual_information_loss(logits, labels, estimator=JOINT)) == pytest.approx(
        0.0, abs=1e-6)


def test_joint_is_invariant_to_permuting_adapter_channels_variational_is_not():
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    permuted = logits[:, [1, 2, 0]]
    joint = [mutual_information_loss(x, labels, estimator=JOINT) for x in (logits, permuted)]
    assert float(joint[0]) == pytest.approx(float(joint[1]), abs=1e-6)
    variational = [mutual_information_loss(x, labels, estimator="variational-image")
                   for x in (logits, permuted)]
    assert float(variational[0]) != pytest.approx(float(variational[1]), abs=1e-3)


def test_joint_matches_a_hand_computation():
    torch.manual_seed(1)
    logits, labels = torch.randn(3, 3, 2, 3), torch.randint(0, 3, (3, 2, 3))
    labels[0, 0] = 255
    expected = hand_joint_mi(logits, labels, 255)
    assert float(-mutual_information_loss(logits, labels, estimator=JOINT)) == pytest.approx(
        expected, abs=1e-5)


def test_eq1_is_the_papers_cross_entropy_over_every_pixel_and_variational_its_per_image_bound():
    """Eq. 1 as published: -1/(|D||Omega|) sum_i sum_p sum_k y_ipk log q_k(z_ip), by hand."""
    torch.manual_seed(2)
    logits, labels = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    log_q = torch.log_softmax(logits, dim=1)
    by_hand = -sum(float(log_q[i, labels[i, h, w], h, w]) for i in range(2) for h in range(4)
                   for w in range(4)) / (2 * 16)
    for name in ("eq1", "ce"):  # the earlier name is the same estimator
        assert float(mutual_information_loss(logits, labels, estimator=name)) == pytest.approx(
            by_hand, abs=1e-5)
    assert float(mutual_information_loss(logits, labels)) == pytest.approx(by_hand, abs=1e-5)
    per_image = [
        label_entropy(labels[b], 3) - float(torch.nn.functional.cross_entropy(logits[b:b + 1], labels[b:b + 1]))
        for b in range(2)
    ]
    bound = -float(mutual_information_loss(logits, labels, estimator="variational-image"))
    assert bound == pytest.approx(sum(per_image) / 2, abs=1e-5)


@pytest.mark.parametrize("estimator", ["joint-image", "variational-image", "eq1", "joint-batch",
                                       "rmi"])
def test_ignored_pixels_change_nothing(estimator):
    torch.manual_seed(3)
    logits, labels = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    labels[:, :2] = 255
    changed = logits.clone()
    changed[:, :, :2] = torch.randn(2, 3, 2, 4) * 10
    a = mutual_information_loss(logits, labels, estimator=estimator)
    b = mutual_information_loss(changed, labels, estimator=estimator)
    assert float(a) == pytest.approx(float(b), abs=1e-6)


@pytest.mark.parametrize("estimator", ["joint-image", "variational-image", "eq1", "joint-batch",
                                       "rmi"])
@pytest.mark.parametrize("normalize", [False, True])
def test_degenerate_images_stay_finite(estimator, normalize):
    logits = torch.randn(3, 4, 3, 3, requires_grad=True)
    labels = torch.stack([
        torch.zeros(3, 3, dtype=torch.long),           # one class
        torch.randint(0, 2, (3, 3)),                   # classes 2 and 3 absent
        torch.full((3, 3), 255),                       # every pixel ignored
    ])
    loss = mutual_information_loss(logits, labels, estimator=estimator, normalize=normalize)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_all_ignored_batch_gives_an_exact_zero_with_a_gradient():
    logits = torch.randn(2, 3, 2, 2, requires_grad=True)
    loss = mutual_information_loss(logits, torch.full((2, 2, 2), 255))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_labels_out_of_range_are_refused():
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        mutual_information_loss(torch.randn(1, 3, 2, 2), torch.tensor([[[0, 1], [3, 0]]]))


def test_mismatched_sizes_are_refused_with_a_hint():
    with pytest.raises(ValueError, match="Resize one to the other"):
        mutual_information_loss(torch.randn(1, 3, 4, 4), torch.zeros(1, 2, 2, dtype=torch.long))


def test_classification_treats_the_batch_as_the_sample_set():
    labels = torch.tensor([0, 1, 2, 1])
    logits = confident(labels.view(1, 4, 1), 3)[0].permute(1, 0, 2).reshape(4, 3)
    assert float(-mutual_information_loss(logits, labels, estimator=JOINT)) == pytest.approx(
        label_entropy(labels, 3), abs=1e-4)


def test_negative_entropy_is_minimal_for_the_uniform_distribution():
    uniform = negative_entropy(torch.zeros(2, 5, 3, 3))
    assert float(uniform) == pytest.approx(-math.log(5), abs=1e-6)
    peaked = negative_entropy(torch.tensor([10.0, 0, 0, 0, 0]).view(1, 5, 1, 1))
    random = negative_entropy(torch.randn(2, 5, 3, 3))
    assert float(uniform) < float(random) < float(peaked) <= 0.0


def test_negative_entropy_gradient_flattens_the_distribution():
    features = torch.tensor([[3.0, 0.0, -1.0]], requires_grad=True)
    negative_entropy(features, dim=1).backward()
    with torch.no_grad():
        stepped = features - 0.5 * features.grad
        assert float(negative_entropy(stepped, dim=1)) < float(negative_entropy(features, dim=1))


def test_negative_entropy_mask_tau_and_channels_last():
    features = torch.randn(2, 4, 3, 3)
    mask = torch.zeros(2, 3, 3, dtype=torch.bool)
    mask[0, 0, 0] = True
    masked = negative_entropy(features, mask=mask)
    p = (features[0, :, 0, 0]).softmax(0)
    assert float(masked) == pytest.approx(float((p * p.log()).sum()), abs=1e-6)
    last = negative_entropy(features.permute(0, 2, 3, 1), dim=-1)
    assert float(last) == pytest.approx(float(negative_entropy(features)), abs=1e-6)
    assert float(negative_entropy(features, tau=100.0)) < float(negative_entropy(features))
    with pytest.raises(ValueError, match="tau must be positive"):
        negative_entropy(features, tau=0)


@pytest.mark.parametrize("dim, tau, masked", [(1, 1.0, False), (1, 0.5, True), (-1, 2.0, False)])
def test_negative_entropy_gradient_matches_autograd_on_the_formula(dim, tau, masked):
    torch.manual_seed(4)
    features = torch.randn(2, 5, 3, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, 3, 4) > 0.4 if dim == 1 else torch.rand(2, 5, 3) > 0.4
    mask = mask if masked else None
    assert torch.autograd.gradcheck(lambda f: negative_entropy(f, dim=dim, tau=tau, mask=mask), (features,))
    log_p = torch.log_softmax(features / tau, dim=dim)
    per_position = (log_p.exp() * log_p).sum(dim=dim)
    reference = per_position[mask].mean() if masked else per_position.mean()
    (expected,) = torch.autograd.grad(reference, features)
    (actual,) = torch.autograd.grad(negative_entropy(features, dim=dim, tau=tau, mask=mask), features)
    torch.testing.assert_close(actual, expected)


def test_negative_entropy_over_label_statistics_equals_the_mask_of_valid_pixels():
    labels = torch.randint(0, 3, (3, 4, 5))
    labels[1] = 255  # an image with no valid pixel must not dilute the others' weights
    labels[0, :2] = 255
    features = torch.randn(3, 6, 4, 5)
    by_mask = negative_entropy(features, mask=labels != 255)
    by_labels = negative_entropy(features, labels=label_statistics(labels, 3, 255))
    assert float(by_labels) == pytest.approx(float(by_mask), abs=1e-6)


def test_label_statistics_are_computed_once_and_give_the_same_loss():
    labels = torch.randint(0, 4, (2, 6, 6))
    labels[0, 0] = 255
    logits = torch.randn(2, 4, 6, 6)
    statistics = label_statistics(labels, 4, 255)
    for estimator in ("joint-image", "variational-image", "eq1"):
        direct = mutual_information_loss(logits, labels, estimator=estimator)
        shared = information_loss(logits, statistics, estimator=estimator, normalize=False)
        assert float(shared) == pytest.approx(float(direct), abs=1e-7)


def test_the_readme_and_the_help_say_the_default_is_the_papers_eq1_not_plain_cross_entropy():
    """The default estimator is the paper's Eq. 1 in its published form; the words users read
    must say so, and must not call this project's per-image joint estimator the paper's."""
    from pathlib import Path

    from imachsr import IMacHSR
    from imachsr.train import TrainConfig
    from imachsr.train.command_line import parser

    root = Path(__file__).resolve().parents[2]
    readme = " ".join((root / "README.md").read_text().split())
    assert ("By default the tap term is the paper's Eq. 1 in its published form: the "
            "cross-entropy of the tap's adapter over every pixel, which maximises a lower bound "
            "on the mutual information between the tap and the labels.") in readme
    assert "`joint-image`, this project's own per-image estimate" in readme
    assert "paper's joint mutual information" not in readme
    assert TrainConfig().mi == "eq1"
    assert IMacHSR.__init__.__kwdefaults__["mi"] == "eq1"
    help_text = " ".join(parser().format_help().split())
    assert "eq1 is the paper's" in help_text and "this project's per-image alternatives" in help_text


# --- heterogeneous losses (issue 24) ----------------------------------------------------------


def test_batch_joint_mi_asks_a_channel_to_mean_one_class_across_images():
    # Two single-class images; channel k says class k in both. Per image there is nothing to
    # know (H(Y_b) = 0); over the batch the channel tells the class: log 2.
    logits = torch.full((2, 2, 2, 2), -20.0)
    logits[0, 0], logits[1, 1] = 20.0, 20.0
    labels = torch.stack([torch.zeros(2, 2, dtype=torch.long), torch.ones(2, 2, dtype=torch.long)])
    batch = -float(mutual_information_loss(logits, labels, estimator="joint-batch"))
    assert batch == pytest.approx(math.log(2), abs=1e-6)
    assert -float(mutual_information_loss(logits, labels, estimator="joint-image")) == \
        pytest.approx(0.0, abs=1e-6)
    # A channel that means class 0 in one image and class 1 in the other tells nothing.
    swapped = logits.clone()
    swapped[1] = logits[0]
    assert -float(mutual_information_loss(swapped, labels, estimator="joint-batch")) == \
        pytest.approx(0.0, abs=1e-6)
    assert -float(mutual_information_loss(logits, labels, estimator="joint-batch",
                                          normalize=True)) == pytest.approx(1.0, abs=1e-6)


def test_batch_joint_mi_matches_a_hand_computation():
    # One image of 2 pixels and one of 1, probabilities given directly through log.
    probs = torch.tensor([[[0.8, 0.3]], [[0.2, 0.7]]]).permute(1, 0, 2)  # (1, 2, 2)
    logits = torch.cat([probs.log(), torch.tensor([[[0.6], [0.4]]]).log().expand(1, 2, 2)
                        .clone()], dim=0)  # image 2: p = (0.6, 0.4) at both pixels
    labels = torch.tensor([[0, 1], [1, 255]])
    rows = [(0.8, 0.2, 0), (0.3, 0.7, 1), (0.6, 0.4, 1)]  # (p0, p1, label) per valid pixel
    joint = [[sum(r[k] for r in rows if r[2] == c) / 3 for c in range(2)] for k in range(2)]
    pk = [sum(joint[k]) for k in range(2)]
    pc = [joint[0][c] + joint[1][c] for c in range(2)]
    by_hand = sum(joint[k][c] * math.log(joint[k][c] / (pk[k] * pc[c]))
                  for k in range(2) for c in range(2))
    assert -float(mutual_information_loss(logits, labels, estimator="joint-batch")) == \
        pytest.approx(by_hand, abs=1e-6)


def region_bound_by_loops(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The region-MI bound written out for maps too small to pool: per image and class, the
    3x3 neighbourhood vectors, their covariances and 1/2 log det of the conditional one, / 9."""
    from imachsr.region_information import EPSILON

    values = []
    batch, classes, height, width = probs.shape
    for b in range(batch):
        for k in range(classes):
            y_vectors, p_vectors = [], []
            for i in range(height - 2):
                for j in range(width - 2):
                    y_vectors.append([float(labels[b, i + di, j + dj] == k)
                                      for di in range(3) for dj in range(3)])
                    p_vectors.append([float(probs[b, k, i + di, j + dj])
                                      for di in range(3) for dj in range(3)])
            y = torch.tensor(y_vectors, dtype=torch.float64).T
            p = torch.tensor(p_vectors, dtype=torch.float64).T
            y, p = y - y.mean(1, keepdim=True), p - p.mean(1, keepdim=True)
            m, ridge = y.shape[1], EPSILON * torch.eye(9, dtype=torch.float64)
            cov_y, cov_p, cov_yp = y @ y.T / m, p @ p.T / m + ridge, y @ p.T / m
            conditional = cov_y - cov_yp @ torch.linalg.inv(cov_p) @ cov_yp.T + ridge
            values.append(0.5 * float(torch.logdet(conditional)) / 9)
    return sum(values) / len(values)


def test_region_mi_is_the_gaussian_bound_written_out_and_mixed_half_with_cross_entropy():
    from imachsr.region_information import region_information_loss

    torch.manual_seed(5)
    logits, labels = torch.randn(2, 3, 7, 8), torch.randint(0, 3, (2, 7, 8))
    probs = logits.softmax(dim=1)
    region = float(region_information_loss(probs, labels, torch.ones_like(labels, dtype=torch.bool)))
    assert region == pytest.approx(region_bound_by_loops(probs, labels), abs=1e-6)
    cross_entropy = float(torch.nn.functional.cross_entropy(logits, labels))
    mixed = float(mutual_information_loss(logits, labels, estimator="rmi"))
    assert mixed == pytest.approx(0.5 * cross_entropy + 0.5 * region, abs=1e-5)


def test_region_mi_rewards_predictions_whose_neighbourhoods_explain_the_labels():
    from imachsr.region_information import region_information_loss

    torch.manual_seed(6)
    labels = torch.randint(0, 2, (2, 12, 12))
    valid = torch.ones_like(labels, dtype=torch.bool)
    perfect = torch.nn.functional.one_hot(labels, 2).permute(0, 3, 1, 2).float()
    constant = torch.full_like(perfect, 0.5)
    noisy = (perfect * 0.6 + torch.rand_like(perfect) * 0.4)
    scores = [float(region_information_loss(p, labels, valid)) for p in (perfect, noisy, constant)]
    assert scores[0] < scores[1] < scores[2]


def test_region_mi_refuses_class_labels_and_leaves_maps_below_3x3_to_cross_entropy():
    with pytest.raises(ValueError, match=r"region MI needs \(B, H, W\) labels"):
        mutual_information_loss(torch.randn(4, 3), torch.randint(0, 3, (4,)), estimator="rmi")
    logits, labels = torch.randn(1, 3, 2, 2, requires_grad=True), torch.randint(0, 3, (1, 2, 2))
    loss = mutual_information_loss(logits, labels, estimator="rmi")
    loss.backward()
    assert float(loss.detach()) == pytest.approx(0.5 * float(F.cross_entropy(logits.detach(), labels)), abs=1e-6)
    assert torch.isfinite(logits.grad).all()


def test_pixel_contrast_matches_the_supervised_contrastive_formula_by_hand():
    from imachsr.pixel_contrast import pixel_contrast_loss

    # 4 valid pixels in 2-d (one image, 2x2), classes 0, 0, 1, 1; one more pixel ignored.
    vectors = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8], [5.0, 5.0]])
    labels = torch.tensor([0, 0, 1, 1, 0])
    valid = torch.tensor([True, True, True, True, False])
    embedding = vectors.t().reshape(1, 2, 5)  # (B, D, N)
    t = 0.5
    unit = torch.nn.functional.normalize(vectors[:4], dim=1)
    by_hand = []
    for i in range(4):
        others = [a for a in range(4) if a != i]
        denominator = sum(math.exp(float(unit[i] @ unit[a]) / t) for a in others)
        positives = [p for p in others if labels[p] == labels[i]]
        by_hand.append(-sum(float(unit[i] @ unit[p]) / t - math.log(denominator)
                            for p in positives) / len(positives))
    loss = pixel_contrast_loss(embedding, labels.view(1, 5), valid.view(1, 5), temperature=t)
    assert float(loss) == pytest.approx(sum(by_hand) / 4, abs=1e-5)


def test_pixel_contrast_draws_a_bounded_number_of_anchors_and_survives_lonely_pixels():
    from imachsr.pixel_contrast import pixel_contrast_loss

    torch.manual_seed(0)
    embedding = torch.randn(2, 8, 40, 40, requires_grad=True)
    labels = torch.randint(0, 3, (2, 40, 40))
    loss = pixel_contrast_loss(embedding, labels, labels >= 0, anchors=256)
    loss.backward()
    assert torch.isfinite(loss) and (embedding.grad != 0).sum() <= 256 * 8
    lonely = torch.randn(1, 4, 1, 2, requires_grad=True)  # two pixels of different classes
    loss = pixel_contrast_loss(lonely, torch.tensor([[[0, 1]]]), torch.ones(1, 1, 2, dtype=torch.bool))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(lonely.grad, torch.zeros_like(lonely))


def test_contrast_needs_the_scheme_that_holds_the_heads():
    with pytest.raises(ValueError, match="mi='contrast' compares the head's hidden embedding"):
        mutual_information_loss(torch.randn(1, 3, 4, 4), torch.randint(0, 3, (1, 4, 4)),
                                estimator="contrast")
