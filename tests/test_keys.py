"""Key files: CSPRNG material, 0600, no overwrite, fingerprint checks, nothing secret in repr."""

from __future__ import annotations

import json
import math
import stat

import pytest

from veilnet import keys
from veilnet.cli import main
from veilnet.errors import KeyFileError, OutputExistsError


def _key(seed: int | None = None) -> keys.Key:
    rng = keys.KeyRNG(seed)
    perm = rng.permutation(48)
    return keys.Key(scheme="test", params={"n": 48}, material={"perm": perm, "flip": rng.subset(48, 24)}, entropy_bits=rng.entropy_bits(keys.log2_factorial(48)), reproducible=rng.reproducible)


def test_csprng_keys_differ_and_seeded_keys_repeat():
    assert _key().material != _key().material
    assert _key(7).material == _key(7).material
    assert _key(7).reproducible and not _key().reproducible
    assert _key().entropy_bits == pytest.approx(keys.log2_factorial(48)) and _key().entropy_bits >= keys.MIN_ENTROPY_BITS
    assert _key(7).entropy_bits == 3  # capped by the seed's bits


def test_log2_factorial_and_binomial_are_exact():
    assert keys.log2_factorial(10) == pytest.approx(math.log2(math.factorial(10)))
    assert keys.log2_binomial(48, 24) == pytest.approx(math.log2(math.comb(48, 24)))


def test_save_load_round_trip_mode_0600(tmp_path):
    key = _key()
    path = key.save(tmp_path / "k.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = keys.load(path, scheme="test")
    assert loaded == key and loaded.fingerprint == key.fingerprint
    assert not list(tmp_path.glob(".*.tmp"))


def test_never_overwrites_without_force(tmp_path):
    path = _key().save(tmp_path / "k.json")
    before = path.read_text()
    with pytest.raises(OutputExistsError, match="already exists"):
        _key().save(path)
    assert path.read_text() == before
    other = _key()
    other.save(path, force=True)
    assert keys.load(path) == other


def test_repr_shows_fingerprint_not_material():
    key = _key()
    text = repr(key) + str(key)
    assert "material" not in text and str(key.material["perm"]) not in text


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t[: len(t) // 2], "not valid JSON"),
        (lambda t: t.replace('"perm": [', '"perm": [0, ', 1), "does not match its fingerprint"),
        (lambda t: json.dumps({**json.loads(t), "version": 99}), "version 99"),
        (lambda t: json.dumps({k: v for k, v in json.loads(t).items() if k != "material"}), "lacks the field"),
        (lambda t: json.dumps({**json.loads(t), "format": "other"}), "not a veilnet key file"),
        (lambda t: "", "not valid JSON"),
    ],
)
def test_tampered_or_truncated_files_are_rejected(tmp_path, mutate, message):
    path = _key().save(tmp_path / "k.json")
    path.write_text(mutate(path.read_text()))
    with pytest.raises(KeyFileError, match=message):
        keys.load(path)


def test_wrong_scheme_and_missing_file(tmp_path):
    path = _key().save(tmp_path / "k.json")
    with pytest.raises(KeyFileError, match="expected a 'block' key"):
        keys.load(path, scheme="block")
    with pytest.raises(KeyFileError, match="does not exist"):
        keys.load(tmp_path / "missing.json")


def test_key_info_prints_fingerprint_never_material(tmp_path, capsys):
    key = _key()
    path = key.save(tmp_path / "k.json")
    assert main(["key", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert key.fingerprint in out and str(key.material["perm"][:5])[1:-1] not in out
