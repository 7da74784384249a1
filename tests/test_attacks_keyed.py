"""veilnet.keyed.attacks and the random-key measurement: what each attack recovers (measured, not assumed)."""

from __future__ import annotations

import pytest
import torch

from veilnet import data, keys, models
from veilnet.demo import keyed_demo
from veilnet.errors import ConfigError
from veilnet.keyed import KeyParams, encrypt_images, generate_key, vit_key
from veilnet.keyed.attacks import ciphertext_only_attack, known_plaintext_attack, weight_matching_attack
from veilnet.keyed.evaluation import evaluate, evaluate_random_keys, markdown, quartiles
from veilnet.keyed.transform import transform_model

KINDS = [("block", "signed-permutation"), ("vit", "permutation"), ("vit", "signed-permutation"), ("vit", "orthogonal")]


@pytest.fixture(scope="module")
def cifar(cifar_jpeg_zip) -> tuple[torch.Tensor, torch.Tensor]:
    """(shuffled test images, shuffled train images) of the JPEG CIFAR-10, 1000 each."""
    gen = torch.Generator().manual_seed(0)
    test = data.load(f"folder:{cifar_jpeg_zip}", "test").images
    train = data.load(f"folder:{cifar_jpeg_zip}", "train").images
    return test[torch.randperm(len(test), generator=gen)[:1000]], train[torch.randperm(len(train), generator=gen)[:1000]]


@pytest.mark.shared
@pytest.mark.parametrize(("scheme", "ea"), KINDS)
def test_known_plaintext_recovers_every_generated_key_from_one_pair(cifar, scheme: str, ea: str) -> None:
    key = generate_key(scheme, 4, 3, 32, ea=ea)
    result = known_plaintext_attack(key, cifar[0][:20], holdout=4)
    assert result.pairs_needed == 1 and result.key_fraction == 1.0
    assert result.trials[0].holdout_psnr > 100


def test_known_plaintext_with_a_general_ea_needs_more_pairs_than_block_pixels() -> None:
    torch.manual_seed(0)
    ea = torch.randn(12, 12, dtype=torch.float64) + 4 * torch.eye(12, dtype=torch.float64)
    key = vit_key(ea, block_size=2, channels=3, image_size=8)
    result = known_plaintext_attack(key, torch.rand(40, 3, 8, 8), holdout=4)
    assert result.pairs_needed is not None and 12 < result.pairs_needed <= 32
    assert not result.trials[0].score.exact


@pytest.mark.parametrize(("scheme", "ea"), KINDS)
def test_weight_matching_recovers_the_key(scheme: str, ea: str) -> None:
    arch = {"arch": "vit", "image_size": 16, "patch_size": 4, "dim": 64, "depth": 1, "heads": 2, "mlp_dim": 32}
    if scheme == "block":
        arch = {"arch": "convmixer", "dim": 64, "depth": 1, "kernel_size": 3, "patch_size": 4}
    name = arch.pop("arch")
    plain = models.create(name, **arch).eval()
    key = generate_key(scheme, 4, 3, 16, ea=ea)
    result = weight_matching_attack(transform_model(plain, key), plain, key)
    assert result.score.exact and result.relative_logit_error < 1e-5


@pytest.mark.shared
def test_ciphertext_only_recovers_the_block_key_from_a_hundred_images(cifar) -> None:
    key = generate_key("block", 4, 3, 32, seed=5)
    result = ciphertext_only_attack(key, cifar[0][:100], cifar[1])
    assert result.score.exact
    assert result.decrypted_psnr > 100 and result.encrypted_psnr < 12
    with pytest.raises(ConfigError, match="permutation"):
        ciphertext_only_attack(generate_key("vit", 4, 3, 32, ea="orthogonal"), cifar[0][:10], cifar[1][:10])


@pytest.mark.shared
def test_ciphertext_only_solves_the_vit_block_permutation_as_a_jigsaw(cifar) -> None:
    key = generate_key("vit", 4, 3, 32, ea="signed-permutation", seed=50)
    result = ciphertext_only_attack(key, cifar[0][:100], cifar[1])
    assert result.mirrored_psnr > 100  # the key, or its left-right mirror: images are recovered


def test_random_keys_and_the_evaluation() -> None:
    split = data.subset(data.load("digits", "test"), 3)
    model = models.create("convmixer", dim=16, depth=1, kernel_size=3, patch_size=4).eval()
    key = generate_key("block", 4, 3, 32)
    attack = evaluate_random_keys(transform_model(model, key), KeyParams.of(key), split.images, split.labels, n_keys=4, seed=1)
    again = evaluate_random_keys(transform_model(model, key), KeyParams.of(key), split.images, split.labels, n_keys=4, seed=1)
    assert attack.accuracies == again.accuracies and len(attack.accuracies) == 4
    assert quartiles([0.1, 0.2, 0.3, 0.4, 0.5]) == pytest.approx({"min": 0.1, "q1": 0.2, "median": 0.3, "q3": 0.4, "max": 0.5})
    result = evaluate(model, key, split.images, split.labels, random_keys=3, seed=0)
    assert result.labels_identical and result.max_relative_logit_difference < 1e-4
    assert result.plain_model_plain_images == result.transformed_model_encrypted_images
    assert result.key_space_bits == pytest.approx(247.82, abs=0.01) and result.paper["key_space_bits"] == 543.8
    assert "90.46" in markdown(result)
    assert result.to_dict()["random_keys"]["n_keys"] == 3
    from veilnet.keyed import KeyedEvaluation

    assert KeyedEvaluation.from_dict(result.to_dict()) == result  # a report can be rebuilt from the JSON


def test_demo_step_writes_key_model_and_report(tmp_path) -> None:
    split = data.subset(data.load("digits", "test"), 2)
    model = models.create("vit", image_size=32, patch_size=4, dim=16, depth=1, heads=2, mlp_dim=16).eval()
    result = keyed_demo(model, split.images, split.labels, random_keys=3, output_dir=tmp_path)
    assert result.key.scheme == "vit" and result.labels_identical
    assert (tmp_path / "random_keys.png").stat().st_size > 1000
    assert (tmp_path / "key.json").stat().st_mode & 0o777 == 0o600
    keyed = models.load(tmp_path / "keyed_model")
    key = keys.load(tmp_path / "key.json")
    x = split.float_images()
    with torch.no_grad():
        assert (keyed(encrypt_images(x, key)) - model(x)).abs().max() <= 1e-4 * model(x).abs().max()


def test_one_known_pair_recovers_the_whole_key_only_for_a_colour_pair() -> None:
    """A grey pair (R = G = B) leaves the shuffle's channels undecided: held-out colour images
    decrypt only in part. A colour pair recovers the whole key (ConvMixer block key, M = 4)."""
    gen = torch.Generator().manual_seed(0)
    key = generate_key("block", 4, 3, 32, seed=3)
    grey = torch.rand(1, 1, 32, 32, generator=gen).expand(1, 3, 32, 32)
    colour = torch.rand(1, 3, 32, 32, generator=gen)
    held_out = torch.rand(8, 3, 32, 32, generator=gen)
    from veilnet.keyed.attacks.known_plaintext import is_grey

    assert is_grey(grey).tolist() == [True] and is_grey(held_out).tolist() == [False] * 8
    from_grey = known_plaintext_attack(key, torch.cat([grey, held_out]), pair_counts=[1], holdout=8).trials[0]
    assert not from_grey.score.exact and from_grey.score.shuffle_fraction < 0.6
    assert from_grey.holdout_pixel_fraction < 0.6
    from_colour = known_plaintext_attack(key, torch.cat([colour, held_out]), pair_counts=[1], holdout=8).trials[0]
    assert from_colour.score.exact and from_colour.holdout_pixel_fraction == 1.0


def test_wrong_keys_are_never_the_key_even_in_a_tiny_key_space() -> None:
    """1×1 blocks of 2 channels: 2! shuffles × 2 flips = 4 keys, so 12 draws meet the true key
    several times; every such draw is skipped."""
    key = generate_key("block", 1, 2, 2, seed=0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 3))
    images, labels = torch.rand(5, 2, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    result = evaluate_random_keys(model, KeyParams.of(key), images, labels, n_keys=12, seed=0)
    assert key.fingerprint not in result.fingerprints and len(result.fingerprints) == 12
    assert result.skipped > 0
    with pytest.raises(ConfigError, match="key space is too small"):
        evaluate_random_keys(model, KeyParams.of(generate_key("block", 1, 1, 1)), torch.rand(2, 1, 1, 1), torch.tensor([0, 1]), n_keys=2)


def test_the_demo_seed_gives_the_key_and_the_wrong_keys_different_streams() -> None:
    """`veilnet demo --seed 0` seeded the key and wrong key 0 alike: the wrong key was the key."""
    split = data.subset(data.load("digits", "test"), 1)
    model = models.create("convmixer", dim=16, depth=1, kernel_size=3, patch_size=4).eval()
    result = keyed_demo(model, split.images, split.labels, random_keys=5, seed=0)
    assert generate_key("block", 4, 3, 32, seed=0).fingerprint == result.key.fingerprint
    assert result.key.fingerprint not in result.random_keys.fingerprints
    assert len(set(result.random_keys.fingerprints)) == 5


def test_weight_matching_refuses_a_plain_model_that_does_not_fit() -> None:
    from veilnet.errors import KeyMismatchError

    key = generate_key("block", 4, 3, 16)
    plain = models.create("convmixer", dim=32, depth=1, kernel_size=3, patch_size=4).eval()
    other = models.create("convmixer", dim=16, depth=1, kernel_size=3, patch_size=4).eval()
    with pytest.raises(KeyMismatchError, match="does not fit"):
        weight_matching_attack(transform_model(plain, key), other, key)
    with pytest.raises(KeyMismatchError, match="architecture"):
        weight_matching_attack(transform_model(plain, key), models.create("vit", image_size=16, patch_size=4, dim=32, depth=1, heads=2, mlp_dim=16), key)


def test_a_score_in_words_names_only_the_parts_the_key_has() -> None:
    from veilnet.keyed.attacks.scoring import KeyScore, decibels

    exact = KeyScore(block_perm_fraction=None, shuffle_fraction=1.0, flip_fraction=1.0, ea_relative_error=0.0, key_fraction=1.0, exact=True)
    assert exact.described("permutation") == "the whole key, exactly (pixel shuffle 100.0%)"
    assert exact.described("signed-permutation") == "the whole key, exactly (pixel shuffle 100.0%, flips 100.0%)"
    partial = KeyScore(block_perm_fraction=0.5, shuffle_fraction=None, flip_fraction=None, ea_relative_error=0.3, key_fraction=0.25, exact=False)
    assert partial.described("orthogonal") == "25.0% of the key, not all of it (block order 50.0%, Ea's relative error 0.3)"
    assert decibels(float("inf")) == "∞ dB (exact)" and decibels(31.04) == "31.0 dB"
