"""Property inference (veilnet.attacks.property): the classifier attacks (inference attacks 1–3)
and the k-NN attack (inference attack 4) of Xiang et al. (ICLR 2020), section 4.3.

Each attack is first shown to succeed where it must — the hidden property (the digit) from raw
pixels, far below chance — and to fail where it must — features independent of the image stay
at chance —, so a broken attack or a broken metric shows. Attacker: digits (16×16) train split
(600 images); victim: the digits test split (359 images, disjoint).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from veilnet import data
from veilnet.attacks import property as prop
from veilnet.errors import ConfigError, ShapeError

# A width-8 CNN, 4 epochs over 600 images: about a second per classifier on 2 cores.
FAST = {"epochs": 4, "width": 8, "lr": 3e-3, "batch_size": 64}


@pytest.fixture(scope="module")
def splits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    attacker = data.load("digits:size=16", "train")
    victim = data.load("digits:size=16", "test")
    return attacker.images[:600], attacker.labels[:600], victim.images, victim.labels


@pytest.fixture(scope="module")
def raw_attack(splits) -> tuple[prop.PropertyResult, torch.nn.Module]:
    before = torch.get_rng_state()
    out = prop.classifier_attack("inference 1 (raw)", "raw images", *splits, attacker_split="digits:train", victim_split="digits:test", seed=3, **FAST)
    assert torch.equal(torch.get_rng_state(), before), "training must leave the global RNG as it was"
    return out


# --------------------------------------------------------------------------------------------
# Classifier attacks


def test_classifier_on_raw_images_beats_chance_widely(raw_attack, splits) -> None:
    result, classifier = raw_attack
    _, _, victim_images, victim_labels = splits
    assert result.num_classes == 10 and result.n == 359 and result.n_attacker == 600 and result.k is None
    assert (result.attacker_split, result.victim_split, result.seed) == ("digits:train", "digits:test", 3)
    assert result.chance_error == pytest.approx(1 - torch.bincount(victim_labels).max().item() / 359)
    assert result.error < 0.3 < 0.8 < result.chance_error
    assert result.beats_chance and result.config["classifier"] == "cnn"
    # The error is the classifier's own error on the victim's images.
    predicted = prop.predict_property(classifier, victim_images, batch_size=100)
    assert result.error == pytest.approx((predicted != victim_labels).double().mean().item())


def test_a_given_classifier_is_applied_without_training(raw_attack, splits) -> None:
    """Inference attack 1: the raw-image classifier applied to other test inputs (here the victim's
    images as floats in [0, 1] — they must give the same predictions as the uint8 images)."""
    trained, classifier = raw_attack
    _, _, victim_images, victim_labels = splits
    weights = {k: v.clone() for k, v in classifier.state_dict().items()}
    result, same = prop.classifier_attack("inference 1", "dec(a*)", None, None, victim_images.float() / 255, victim_labels, classifier=classifier)
    assert same is classifier and all(torch.equal(v, classifier.state_dict()[k]) for k, v in weights.items())
    assert result.error == pytest.approx(trained.error) and result.n_attacker == 600 and result.num_classes == 10
    assert result.config == {"classifier": "given"}


def test_classifier_on_features_independent_of_the_image_stays_at_chance(splits) -> None:
    attacker_images, attacker_labels, victim_images, victim_labels = splits
    gen = torch.Generator().manual_seed(0)
    noise_attacker = torch.randn(attacker_images.shape, generator=gen)
    noise_victim = torch.randn(victim_images.shape, generator=gen)
    result, _ = prop.classifier_attack("noise", "noise", noise_attacker, attacker_labels, noise_victim, victim_labels, **FAST)
    # 5 binomial standard deviations (√(0.9·0.1/359) ≈ 0.016) below chance at most.
    assert result.error > result.chance_error - 0.08
    assert not result.beats_chance or result.error > 0.8


def test_classifier_on_pair_tensors_and_vectors(splits) -> None:
    """A complex network's pair tensor N×2×K×h×w (folded into 2K channels) and N×D vectors (an MLP)."""
    attacker_images, attacker_labels, victim_images, victim_labels = splits

    def pair(images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255
        return torch.stack([x, 1 - x], 1)  # N×2×3×16×16

    result, classifier = prop.classifier_attack("pairs", "pair", pair(attacker_images), attacker_labels, pair(victim_images), victim_labels, **FAST)
    assert classifier.input_shape == (2, 3, 16, 16) and classifier.body[0].in_channels == 6
    assert result.error < 0.3 and result.config["classifier"] == "cnn"

    vec_a, vec_v = attacker_images.flatten(1).float() * 7 + 100, victim_images.flatten(1).float() * 7 + 100
    result, classifier = prop.classifier_attack("vectors", "pixels", vec_a, attacker_labels, vec_v, victim_labels, **FAST)
    assert isinstance(classifier.body[0], torch.nn.Linear) and result.config["classifier"] == "mlp"
    assert result.error < 0.3
    # Standardised by the attacker's own statistics, per dimension.
    std = vec_a.double().std(0, unbiased=False)
    assert torch.allclose(classifier.mean.flatten().double(), vec_a.double().mean(0), rtol=1e-5)
    assert torch.allclose(classifier.std.flatten().double(), torch.where(std > 0, std, torch.ones_like(std)), rtol=1e-4)
    with pytest.raises(ShapeError, match="trained on inputs N×768"):
        classifier(vec_v[:, :10])


# --------------------------------------------------------------------------------------------
# k nearest neighbours


def test_knn_on_raw_pixels_beats_chance_and_matches_scikit_learn(splits) -> None:
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    attacker_images, attacker_labels, victim_images, victim_labels = splits
    results = prop.knn_attack("inference 4", "raw pixels", attacker_images, attacker_labels, victim_images, victim_labels, victim_split="digits:test")
    assert [r.k for r in results] == [1, 3, 5] and [r.attack for r in results] == ["inference 4 (1-NN)", "inference 4 (3-NN)", "inference 4 (5-NN)"]
    for r in results:
        assert r.error < 0.25 < r.chance_error and r.beats_chance and r.n_attacker == 600 and r.victim_split == "digits:test"

    predictions, indices = prop.knn_predict(attacker_images, attacker_labels, victim_images)
    scaler = StandardScaler().fit(attacker_images.flatten(1).double().numpy())
    train_std, test_std = scaler.transform(attacker_images.flatten(1).double().numpy()), scaler.transform(victim_images.flatten(1).double().numpy())
    y = attacker_labels.numpy()
    for r in results:
        knn = KNeighborsClassifier(n_neighbors=r.k, algorithm="brute").fit(train_std, y)
        ref_idx = knn.kneighbors(test_std, return_distance=False)
        assert np.array_equal(indices[:, : r.k].numpy(), ref_idx)
        # The vote, by hand: the most frequent label; a tie goes to the nearest tied class.
        expected, tied_rows = [], []
        for row, neigh in enumerate(ref_idx):
            labels = y[neigh]
            counts = np.bincount(labels, minlength=10)
            tied = np.flatnonzero(counts == counts.max())
            expected.append(next(lab for lab in labels if lab in tied))
            if len(tied) > 1:
                tied_rows.append(row)
        assert np.array_equal(predictions[r.k].numpy(), expected)
        untied = np.setdiff1d(np.arange(len(ref_idx)), tied_rows)
        assert np.array_equal(predictions[r.k].numpy()[untied], knn.predict(test_std)[untied])
        assert r.error == pytest.approx(float(np.mean(np.array(expected) != victim_labels.numpy())))


def test_knn_in_small_chunks_gives_the_same_neighbours(splits) -> None:
    attacker_images, attacker_labels, victim_images, _ = splits
    whole, idx = prop.knn_predict(attacker_images, attacker_labels, victim_images[:50], ks=(1, 3))
    chunked, idx_chunked = prop.knn_predict(attacker_images, attacker_labels, victim_images[:50], ks=(1, 3), batch_size=7, chunk_bytes=8 * 768 * 37)
    assert torch.equal(idx, idx_chunked) and all(torch.equal(whole[k], chunked[k]) for k in (1, 3))


def test_knn_vote_and_ties_on_hand_made_features() -> None:
    train = torch.tensor([[0.0], [1.0], [2.0], [3.0], [3.0]])
    labels = torch.tensor([2, 1, 0, 0, 1])
    test = torch.tensor([[0.1], [2.9]])
    predictions, indices = prop.knn_predict(train, labels, test, ks=(1, 2, 3, 5))
    assert indices.tolist() == [[0, 1, 2, 3, 4], [3, 4, 2, 1, 0]]  # equal distances: lower index first
    assert predictions[1].tolist() == [2, 0]
    assert predictions[2].tolist() == [2, 0]  # 1–1 ties: the nearest neighbour's class
    assert predictions[3].tolist() == [2, 0]  # test 0: 2,1,0 all tied -> 2 (not the smallest class)
    assert predictions[5].tolist() == [1, 0]  # 0 and 1 twice each: 1 is nearer to 0.1; 0 nearer to 2.9


# --------------------------------------------------------------------------------------------
# Labels, chance and results


def test_chance_error_and_animal_vs_vehicle() -> None:
    assert prop.chance_error(torch.tensor([0, 0, 1, 2])) == pytest.approx(0.5)
    assert prop.chance_error(torch.arange(10).repeat(3)) == pytest.approx(0.9)
    assert prop.chance_error(torch.tensor([4, 4, 4])) == 0.0
    assert prop.animal_vs_vehicle(torch.arange(10)).tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 0, 0]
    assert prop.animal_vs_vehicle(torch.tensor([9, 3], dtype=torch.uint8)).tolist() == [0, 1]
    with pytest.raises(ConfigError, match="0..9"):
        prop.animal_vs_vehicle(torch.tensor([3, 10]))
    with pytest.raises(ConfigError, match="non-negative"):
        prop.animal_vs_vehicle(torch.tensor([-1, 3]))
    with pytest.raises(ShapeError, match="1-D integer"):
        prop.animal_vs_vehicle(torch.tensor([1.0, 2.0]))


def test_result_round_trips_and_compares_with_chance() -> None:
    r = prop.PropertyResult(
        attack="inference 4 (3-NN)",
        features="a*",
        error=0.5,
        chance_error=0.9,
        num_classes=10,
        n=20,
        n_attacker=30,
        attacker_split="train",
        victim_split="test",
        seed=0,
        k=3,
        config={"distance": "euclidean"},
    )
    assert prop.PropertyResult.from_dict(r.to_dict()) == r and r.beats_chance
    worse = prop.PropertyResult.from_dict({**r.to_dict(), "error": 0.9, "k": None})
    assert not worse.beats_chance and worse.k is None


# --------------------------------------------------------------------------------------------
# Argument checks (all before any training)

IMAGES = torch.zeros(6, 3, 4, 4)
LABELS = torch.tensor([0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: prop.classifier_attack("a", "f", IMAGES, LABELS[:5], IMAGES, LABELS), ShapeError, "6 inputs but 5 labels"),
        (lambda: prop.classifier_attack("a", "f", IMAGES, LABELS, IMAGES[:0], LABELS[:0]), ShapeError, "no inputs"),
        (lambda: prop.classifier_attack("a", "f", IMAGES, LABELS, IMAGES[:, :, :2], LABELS), ShapeError, "differ in shape"),
        (lambda: prop.classifier_attack("a", "f", IMAGES, LABELS + 5, IMAGES, LABELS, num_classes=3), ConfigError, "out of range"),
        (lambda: prop.classifier_attack("a", "f", IMAGES, LABELS, IMAGES, LABELS.float()), ShapeError, "1-D integer"),
        (lambda: prop.classifier_attack("a", "f", None, None, IMAGES, LABELS), ConfigError, "a trained classifier"),
        (lambda: prop.train_property_classifier(IMAGES, LABELS, num_classes=3, epochs=0), ConfigError, "epochs"),
        (lambda: prop.train_property_classifier(IMAGES.clone().fill_(math.nan), LABELS, num_classes=3), ShapeError, "NaN"),
        (lambda: prop.knn_attack("a", "f", IMAGES, LABELS, IMAGES, LABELS, ks=(0,)), ConfigError, "positive integer"),
        (lambda: prop.knn_attack("a", "f", IMAGES, LABELS, IMAGES, LABELS, ks=(1, 7)), ConfigError, "k = 7 exceeds the attacker's 6"),
        (lambda: prop.knn_attack("a", "f", IMAGES[:0], LABELS[:0], IMAGES, LABELS), ShapeError, "no inputs"),
        (lambda: prop.knn_attack("a", "f", IMAGES, LABELS, IMAGES, LABELS[:4]), ShapeError, "6 inputs but 4 labels"),
        (lambda: prop.knn_attack("a", "f", IMAGES, LABELS, IMAGES.flatten(1), LABELS), ShapeError, "differ in shape"),
        (lambda: prop.knn_attack("a", "f", IMAGES, LABELS, IMAGES, LABELS, num_classes=2), ConfigError, "out of range"),
    ],
)
def test_bad_arguments_raise_one_clear_error(call, error, match) -> None:
    with pytest.raises(error, match=match) as info:
        call()
    assert "\n" not in str(info.value)
