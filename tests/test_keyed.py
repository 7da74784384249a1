"""veilnet.keyed: key schemes, image transforms and model transforms (exact identities)."""

from __future__ import annotations

import math

import pytest
import torch

from veilnet import keys, models
from veilnet.errors import ConfigError, KeyFileError, KeyMismatchError
from veilnet.keyed import check_fits, cipher, decrypt_images, encrypt_images, generate_key, key_space_bits, public_params, vit_key
from veilnet.keyed.transform import fold_normalization, rekey, transform_model, untransform_model

KINDS = [("block", "signed-permutation"), ("vit", "permutation"), ("vit", "signed-permutation"), ("vit", "orthogonal")]
TINY = {
    "convmixer": {"dim": 24, "depth": 2, "kernel_size": 3, "patch_size": 4},
    "vit": {"image_size": 16, "patch_size": 4, "dim": 24, "depth": 2, "heads": 2, "mlp_dim": 32},
}


def _reference_block_encrypt(x: torch.Tensor, shuffle: list[int], flip: list[int], m: int) -> torch.Tensor:
    """ConvMixer paper Fig. 3 with loops over blocks: flatten in (C, M, M) order, Eq. 4 and Eq. 6."""
    out = x.clone()
    n, c, h, w = x.shape
    flips = set(flip)
    for i in range(0, h, m):
        for j in range(0, w, m):
            block = x[:, :, i : i + m, j : j + m].reshape(n, -1)
            new = block[:, shuffle].clone()
            for k in flips:
                new[:, k] = 1 - new[:, k]
            out[:, :, i : i + m, j : j + m] = new.reshape(n, c, m, m)
    return out


def test_block_transform_matches_the_papers_procedure() -> None:
    key = generate_key("block", 4, 3, 16, seed=3)
    x = torch.rand(2, 3, 16, 16)
    expected = _reference_block_encrypt(x, key.material["shuffle"], key.material["flip"], 4)
    assert torch.allclose(encrypt_images(x, key), expected, atol=1e-7)
    assert len(key.material["flip"]) == 24  # exactly half of L = 48


def test_vit_block_permutation_follows_eq_9() -> None:
    key = generate_key("vit", 4, 1, 8, ea="permutation", seed=1)
    x = torch.rand(1, 1, 8, 8)
    y = encrypt_images(x, key)
    perm, shuffle = key.material["block_perm"], key.material["shuffle"]
    blocks = x.reshape(2, 4, 2, 4).permute(0, 2, 1, 3).reshape(4, 16)
    enc = y.reshape(2, 4, 2, 4).permute(0, 2, 1, 3).reshape(4, 16)
    for i in range(4):
        assert torch.equal(enc[i], blocks[perm[i]][shuffle])


@pytest.mark.parametrize(("scheme", "ea"), KINDS)
def test_round_trip_is_exact_on_8_bit_images(scheme: str, ea: str) -> None:
    key = generate_key(scheme, 4, 3, 32, ea=ea)
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    y = encrypt_images(x, key)
    xf = x.float() / 255
    yf = encrypt_images(xf, key)
    if ea == "orthogonal":
        assert yf.dtype == torch.float32 and not cipher(key).keeps_images
        assert (decrypt_images(yf, key) - xf).abs().max() < 1e-5
        return
    assert y.dtype == torch.uint8 and torch.equal(decrypt_images(y, key), x)
    assert yf.min() >= 0 and yf.max() <= 1  # still images
    assert torch.equal((yf * 255).round().to(torch.uint8), y)  # lossless as 8-bit PNG
    assert torch.equal((decrypt_images(yf, key) * 255).round().to(torch.uint8), x)
    assert not torch.equal(y, x)


def test_key_space_is_exact_and_the_papers_figure_includes_a_block_permutation() -> None:
    block = generate_key("block", 4, 3, 32)
    # O_p · O_b = 48! · C(48, 24) for M = 4, C = 3 (ConvMixer paper, Sec. 4.3)
    assert key_space_bits(block) == pytest.approx(math.log2(math.factorial(48) * math.comb(48, 24)), abs=1e-9)
    assert key_space_bits(block) == pytest.approx(247.82, abs=0.01)
    assert block.entropy_bits == pytest.approx(key_space_bits(block))
    # the paper's 2^543.8 is that times 64! (a permutation of the 64 blocks as well)
    signed = generate_key("vit", 4, 3, 32, ea="signed-permutation")
    assert key_space_bits(signed) == pytest.approx(543.8, abs=0.05)
    assert key_space_bits({"scheme": "vit", "block_size": 4, "channels": 3, "image_size": 32, "ea": "orthogonal"}) == math.inf
    seeded = generate_key("block", 4, 3, 32, seed=7)
    assert seeded.reproducible and seeded.entropy_bits <= 3


def test_seeded_keys_are_reproducible_and_survive_the_key_file(tmp_path) -> None:
    a = generate_key("vit", 2, 3, 8, ea="orthogonal", seed=11)
    b = generate_key("vit", 2, 3, 8, ea="orthogonal", seed=11)
    assert a.fingerprint == b.fingerprint
    path = a.save(tmp_path / "k.json")
    loaded = keys.load(path)
    x = torch.rand(3, 3, 8, 8)
    assert torch.equal(encrypt_images(x, loaded), encrypt_images(x, a))


def test_supplied_ea_and_ill_conditioned_ea() -> None:
    q, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64))
    key = vit_key(q, block_size=2, channels=3, image_size=4)
    x = torch.rand(2, 3, 4, 4)
    assert (decrypt_images(encrypt_images(x, key), key) - x).abs().max() < 1e-5
    bad = torch.eye(12, dtype=torch.float64)
    bad[0, 0] = 1e-9
    with pytest.raises(ConfigError, match="ill-conditioned"):
        vit_key(bad, block_size=2, channels=3, image_size=4)
    with pytest.raises(ConfigError, match="12×12"):
        vit_key(torch.eye(5), block_size=2, channels=3, image_size=4)


def test_mismatches_name_both_sides() -> None:
    key = generate_key("block", 4, 3, 32)
    with pytest.raises(KeyMismatchError, match=r"N×3×32×32.*\(2, 3, 28, 28\)"):
        encrypt_images(torch.rand(2, 3, 28, 28), key)
    with pytest.raises(KeyMismatchError, match="3×32×32.*1, 32, 32"):
        encrypt_images(torch.rand(2, 1, 32, 32), key)
    with pytest.raises(KeyMismatchError, match="block size 4.*patch size 2"):
        transform_model(models.create("convmixer", dim=8, depth=1, kernel_size=3, patch_size=2), key)
    with pytest.raises(KeyMismatchError, match="3-channel.*1 channels"):
        check_fits(key, model=models.create("convmixer", dim=8, depth=1, kernel_size=3, patch_size=4, in_channels=1))
    with pytest.raises(KeyMismatchError, match="position embedding"):
        transform_model(models.create("convmixer", dim=8, depth=1, kernel_size=3, patch_size=4), generate_key("vit", 4, 3, 32))
    with pytest.raises(KeyMismatchError, match="32×32 images.*16×16"):
        transform_model(models.create("vit", **TINY["vit"]), generate_key("vit", 4, 3, 32))
    with pytest.raises(KeyMismatchError, match="resnet|ResNet"):
        transform_model(models.create("resnet20"), key)
    with pytest.raises(ConfigError, match="not divisible"):
        generate_key("block", 5, 3, 32)


def test_malformed_material_is_a_key_file_error() -> None:
    good = generate_key("block", 2, 1, 4)
    bad = keys.Key(scheme="block", params=good.params, material={"shuffle": [0, 0, 1, 2], "flip": good.material["flip"]})
    with pytest.raises(KeyFileError, match="not a permutation"):
        cipher(bad)
    ortho = generate_key("vit", 2, 1, 4, ea="orthogonal")
    with pytest.raises(KeyFileError, match="ea_matrix"):
        cipher(keys.Key(scheme="vit", params=ortho.params, material={"block_perm": ortho.material["block_perm"]}))
    with pytest.raises(ConfigError, match="vit_key"):
        generate_key("vit", 2, 1, 4, ea="matrix")


def _logits_match(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a - b).abs().max() <= 1e-4 * a.abs().max())


@pytest.mark.parametrize("arch", ["convmixer", "vit"])
@pytest.mark.parametrize("normalized", [True, False])
def test_transformed_model_on_encrypted_images_gives_the_plain_logits(arch: str, normalized: bool) -> None:
    torch.manual_seed(0)
    norm = {} if normalized else {"mean": 0.0, "std": 1.0}
    model = models.create(arch, **TINY[arch], **norm).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(16, 3, 16, 16)
    plain = model(x)
    for scheme, ea in KINDS:
        if scheme == "vit" and arch == "convmixer":
            continue
        key = generate_key(scheme, 4, 3, 16, ea=ea)
        keyed = transform_model(model, key).eval()
        assert _logits_match(plain, keyed(encrypt_images(x, key))), (scheme, ea)
        assert not _logits_match(plain, keyed(x))
        assert {k: v.shape for k, v in keyed.state_dict().items()} == {k: v.shape for k, v in before.items()}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # input untouched


def test_folding_keeps_the_function_and_makes_normalize_the_identity() -> None:
    model = models.create("convmixer", **TINY["convmixer"]).eval()
    folded = fold_normalization(model)
    x = torch.rand(4, 3, 16, 16)
    assert _logits_match(model(x), folded(x))
    assert torch.equal(folded.normalize.mean, torch.zeros(3)) and torch.equal(folded.normalize.std, torch.ones(3))


@pytest.mark.parametrize(("scheme", "ea"), [("block", "signed-permutation"), ("vit", "orthogonal")])
def test_rekey_and_untransform(scheme: str, ea: str) -> None:
    model = models.create("vit", **TINY["vit"]).eval()
    old, new = generate_key(scheme, 4, 3, 16, ea=ea), generate_key(scheme, 4, 3, 16, ea=ea)
    x = torch.rand(8, 3, 16, 16)
    moved = rekey(transform_model(model, old), old, new)
    assert _logits_match(model(x), moved(encrypt_images(x, new)))
    assert _logits_match(model(x), untransform_model(transform_model(model, old), old)(x))


def test_saved_transformed_model_is_a_plain_model_with_public_card(tmp_path) -> None:
    model = models.create("convmixer", **TINY["convmixer"]).eval()
    key = generate_key("block", 4, 3, 16)
    keyed = transform_model(model, key)
    models.save(keyed, tmp_path / "keyed", extra={"keyed": public_params(key)})
    loaded = models.load(tmp_path / "keyed")
    x = torch.rand(4, 3, 16, 16)
    assert _logits_match(model(x), loaded(encrypt_images(x, key)))
    text = (tmp_path / "keyed.json").read_text()
    assert "shuffle" not in text and 'flip"' not in text
    card = models.card(tmp_path / "keyed")
    assert card["extra"]["keyed"]["fingerprint"] == key.fingerprint
    assert key_space_bits(card["extra"]["keyed"]) == pytest.approx(key_space_bits(key))


@pytest.mark.shared
def test_predicted_labels_identical_on_jpeg_cifar(cifar_jpeg_zip) -> None:
    from veilnet import data, metrics

    split = data.subset(data.load(f"folder:{cifar_jpeg_zip}", split="test"), 10)
    torch.manual_seed(1)
    for arch, kw in (("convmixer", dict(TINY["convmixer"])), ("vit", {**TINY["vit"], "image_size": 32})):
        model = models.create(arch, **kw).eval()
        for scheme, ea in KINDS:
            if scheme == "vit" and arch == "convmixer":
                continue
            key = generate_key(scheme, 4, 3, 32, ea=ea)
            plain = metrics.predict(model, split.images)
            keyed = metrics.predict(transform_model(model, key), encrypt_images(metrics.as_float(split.images), key))
            assert torch.equal(plain.argmax(1), keyed.argmax(1))
            assert _logits_match(plain, keyed)
