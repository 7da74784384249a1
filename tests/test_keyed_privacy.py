"""The keyed rows of the privacy benchmark (veilnet.keyed.privacy): exact equivalence, the
attacker's own keys, the ciphertext-only attack as a row attack, knob refusals."""

from __future__ import annotations

import pytest
import torch

from veilnet import data, plugins
from veilnet.attacks.inversion import InversionResult, evaluate_reconstruction
from veilnet.errors import ConfigError
from veilnet.keyed import privacy
from veilnet.keyed.privacy import DEFENCES, KeyedRow
from veilnet.privacy.defences import AttackContext, Budget, Setup
from veilnet.privacy.task import privacy_task

#: Tiny models (width 1/8: ConvMixer dim 4, ViT dim 8) and one step on 32 images; the block row covers
#: a signed-permutation Ea, the ViT rows a permutation (0) and an orthogonal (2) one.
SETUP = Setup(Budget(width=0.125, train_images=32, epochs=1, batch_size=32), (3, 16, 16), 2, torch.device("cpu"))


@pytest.fixture(scope="module")
def digits() -> tuple[data.ImageSplit, data.ImageSplit]:
    """(attacker's train split, victim's test split) of the 16-px digits with the task's labels."""
    train, test = data.load("digits:size=16", "train"), data.load("digits:size=16", "test")
    task = privacy_task(train.classes)
    return task.apply(train), task.apply(test)


@pytest.fixture(scope="module")
def rows(digits) -> dict[str, KeyedRow]:  # type: ignore[no-untyped-def]
    train = digits[0]
    small = train.select(range(32))
    built = {"block": DEFENCES["keyed-block"].build(4, SETUP)} | {f"vit-{ea}": DEFENCES["keyed-vit"].build(ea, SETUP) for ea in (0, 2)}
    for row in built.values():
        row.fit(small)
        row.eval()
    return built


def test_the_plugin_lists_both_rows() -> None:
    assert set(plugins.load_defences(["keyed-block", "keyed-vit"])) == {"keyed-block", "keyed-vit"}


@pytest.mark.parametrize("name", ["block", "vit-0", "vit-2"])
def test_the_transformed_model_on_encrypted_images_gives_the_plain_logits(rows, digits, name: str) -> None:  # type: ignore[no-untyped-def]
    row, images = rows[name], digits[1].float_images()[:32]
    sent, state = row.send(images, torch.Generator())
    with torch.no_grad():
        keyed, plain = row.receive(row.serve(sent), state), row.plain(images)
    assert not torch.allclose(sent, images), "the server sees encrypted images"
    assert (keyed - plain).abs().max() <= 1e-5


def test_observe_draws_fresh_keys_per_image_never_the_victims(rows, digits) -> None:  # type: ignore[no-untyped-def]
    row = rows["block"]
    images = digits[0].float_images()[:8]
    twice = images[:1].expand(8, -1, -1, -1)
    gen = torch.Generator().manual_seed(0)
    first, second = row.observe(images, gen), row.observe(images, gen)
    assert not torch.equal(first, second), "each call draws new keys"
    per_image = row.observe(twice, gen).flatten(1)
    assert len({tuple(x.tolist()) for x in per_image}) == 8, "one image under 8 keys gives 8 ciphertexts"
    victim = row.send(images, gen)[0]
    assert not (first.flatten(1) == victim.flatten(1)).all(1).any(), "never the victim's key"
    assert torch.equal(row.observe(images, torch.Generator().manual_seed(0)), first), "reproducible from the attacker's generator"


def _context(row: KeyedRow, attacker: data.ImageSplit, victim: data.ImageSplit) -> AttackContext:
    def score(name, described, reconstructions, extra=None):  # type: ignore[no-untyped-def]
        return evaluate_reconstruction(name, described, reconstructions, victim.float_images(), attacker.float_images(), extra=extra)

    sent = row.send(victim.float_images(), torch.Generator())[0]
    return AttackContext(attacker=attacker, victim=victim, sent=sent, budget=SETUP.budget, device=SETUP.device, score=score)


def test_ciphertext_only_key_recovery_beats_the_mean_image_on_the_block_scheme(rows, digits) -> None:  # type: ignore[no-untyped-def]
    attacker, victim = digits
    (result,) = rows["block"].attacks(_context(rows["block"], attacker, victim.select(range(300))))
    assert isinstance(result, InversionResult) and result.n == 300
    assert result.beats_baseline, (result.metrics, result.baseline)
    assert 0 <= result.extra["key_fraction"] <= 1


def test_the_vit_rows_attack_permutation_type_ea_only(rows, digits, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(privacy, "MAX_SWAPS", 5)  # the attack's applicability, not its strength: a short local search
    attacker, victim = digits[0].select(range(200)), digits[1].select(range(64))
    (result,) = rows["vit-0"].attacks(_context(rows["vit-0"], attacker, victim))
    assert isinstance(result, InversionResult) and "block_perm_fraction" in result.extra
    assert rows["vit-2"].attacks(_context(rows["vit-2"], attacker, victim)) == []


@pytest.mark.parametrize(
    ("name", "value"), [("keyed-block", 3), ("keyed-block", 2.5), ("keyed-block", 0), ("keyed-vit", 3), ("keyed-vit", 0.5), ("keyed-vit", -1)]
)
def test_bad_knob_values_are_refused(name: str, value: float) -> None:
    with pytest.raises(ConfigError, match="block-size|ea"):
        DEFENCES[name].build(value, SETUP)
