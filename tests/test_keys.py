"""Key files: CSPRNG material, 0600, no overwrite, fingerprint checks, nothing secret in repr,
and loading as hostile input (every malformed file is one KeyFileError, never a traceback)."""

from __future__ import annotations

import json
import math
import random
import stat
from pathlib import Path
from typing import Any

import pytest
import torch

from veilnet import keys
from veilnet.cli import main
from veilnet.errors import KeyFileError, OutputExistsError
from veilnet.keyed import decrypt_images, encrypt_images, generate_key


@pytest.fixture(autouse=True)
def _test_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    """The generic tests use a scheme 'test' whose validator accepts any material."""
    monkeypatch.setitem(keys._VALIDATORS, "test", lambda key: None)


def _key(seed: int | None = None) -> keys.Key:
    rng = keys.KeyRNG(seed)
    perm = rng.permutation(48)
    return keys.Key(
        scheme="test",
        params={"n": 48},
        material={"perm": perm, "flip": rng.subset(48, 24)},
        entropy_bits=rng.entropy_bits(keys.log2_factorial(48)),
        reproducible=rng.reproducible,
    )


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
    with pytest.raises(OutputExistsError, match="exists; pass --force"):
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
        (lambda t: json.dumps({**json.loads(t), "fingerprint": "é" * 64}), "does not match its fingerprint"),
        (lambda t: json.dumps({**json.loads(t), "fingerprint": "\ud800"}), "does not match its fingerprint"),
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


def test_unknown_scheme_is_refused(tmp_path, monkeypatch):
    path = _key().save(tmp_path / "k.json")
    monkeypatch.delitem(keys._VALIDATORS, "test")
    with pytest.raises(KeyFileError, match="scheme 'test'.*'block', 'vit'"):
        keys.load(path)


def test_a_stream_never_reproduces_a_seeded_key():
    """Wrong keys of an evaluation come from KeyRNG.stream: seed 0's stream is not seed 0's key."""
    direct = [keys.KeyRNG(s).permutation(48) for s in range(50)]
    streamed = [keys.KeyRNG.stream("random-wrong-keys", 0, i).permutation(48) for i in range(50)]
    assert not set(map(tuple, direct)) & set(map(tuple, streamed))
    assert streamed == [keys.KeyRNG.stream("random-wrong-keys", 0, i).permutation(48) for i in range(50)]
    assert keys.KeyRNG.stream("random-wrong-keys", 0, 0).reproducible and not keys.KeyRNG.stream("x", None, 0).reproducible


# ---- hostile key files: block and vit keys, rewritten with a recomputed fingerprint ----------


def _rewrite(path: Path, mutate: Any) -> Path:
    """Apply ``mutate(doc)`` to a key file and store it with the fingerprint recomputed, as an
    attacker who edits the material would (the fingerprint is a checksum, not a signature)."""
    doc = json.loads(path.read_text())
    mutate(doc)
    try:
        doc["fingerprint"] = keys.Key(scheme=doc["scheme"], params=doc["params"], material=doc["material"]).fingerprint
    except (ValueError, TypeError, KeyError):
        pass  # NaN cannot be fingerprinted; the parse must refuse it first
    path.write_text(json.dumps(doc))
    return path


def _saved(tmp_path: Path, scheme: str = "block", ea: str | None = None) -> Path:
    return generate_key(scheme, 4, 3, 8, ea=ea, seed=3).save(tmp_path / f"{scheme}-{ea}.json")


def _set(where: str, name: str, value: Any) -> Any:
    return lambda doc: doc[where].__setitem__(name, value)


HOSTILE = [
    ("block_size 4.7", "block", None, _set("params", "block_size", 4.7), "block_size must be an integer"),
    ("block_size 4.0", "block", None, _set("params", "block_size", 4.0), "block_size must be an integer"),
    ("channels true", "block", None, _set("params", "channels", True), "channels must be an integer"),
    ("image_size '8'", "block", None, _set("params", "image_size", "8"), "image_size must be an integer"),
    ("block_size 0", "block", None, _set("params", "block_size", 0), "must be positive"),
    ("not divisible", "block", None, _set("params", "image_size", 10), "not divisible"),
    ("unknown param", "block", None, _set("params", "rounds", 3), "params are"),
    ("block key with ea", "block", None, _set("params", "ea", "orthogonal"), "params are"),
    ("vit without ea", "vit", "permutation", lambda d: d["params"].pop("ea"), "params are"),
    ("unknown ea", "vit", "permutation", _set("params", "ea", "rot13"), "unknown Ea kind"),
    (
        "shuffle + 0.5",
        "block",
        None,
        lambda d: d["material"].__setitem__("shuffle", [v + 0.5 for v in d["material"]["shuffle"]]),
        "shuffle must be a list of integers",
    ),
    (
        "shuffle as floats",
        "block",
        None,
        lambda d: d["material"].__setitem__("shuffle", [float(v) for v in d["material"]["shuffle"]]),
        "shuffle must be a list of integers",
    ),
    ("shuffle bools", "block", None, lambda d: d["material"].__setitem__("shuffle", [True] * 48), "shuffle must be a list of integers"),
    ("shuffle not a permutation", "block", None, lambda d: d["material"]["shuffle"].__setitem__(0, d["material"]["shuffle"][1]), "not a permutation"),
    ("shuffle too short", "block", None, lambda d: d["material"]["shuffle"].pop(), "not a permutation of 48"),
    ("shuffle out of range", "block", None, lambda d: d["material"]["shuffle"].__setitem__(0, 48), "not a permutation"),
    ("shuffle an object", "block", None, _set("material", "shuffle", {"0": 1}), "list of integers"),
    ("flip repeated", "block", None, lambda d: d["material"]["flip"].__setitem__(0, d["material"]["flip"][1]), "distinct positions"),
    ("flip negative", "block", None, lambda d: d["material"]["flip"].__setitem__(0, -1), "distinct positions"),
    ("flip missing", "block", None, lambda d: d["material"].pop("flip"), "holds the material shuffle, flip"),
    ("extra material", "block", None, _set("material", "block_perm", [0, 1, 2, 3]), "holds the material"),
    ("block_perm not a permutation", "vit", "permutation", lambda d: d["material"]["block_perm"].__setitem__(0, 7), "block_perm is not a permutation of 4"),
    ("Ea wrong shape", "vit", "orthogonal", lambda d: d["material"]["ea_matrix"].pop(), "48×48"),
    ("Ea ragged", "vit", "orthogonal", lambda d: d["material"]["ea_matrix"][3].pop(), "48×48"),
    ("Ea singular", "vit", "orthogonal", lambda d: d["material"]["ea_matrix"].__setitem__(1, d["material"]["ea_matrix"][0]), "ill-conditioned"),
    (
        "Ea not orthogonal",
        "vit",
        "orthogonal",
        lambda d: d["material"]["ea_matrix"][0].__setitem__(0, d["material"]["ea_matrix"][0][0] + 0.1),
        "not orthogonal|orthogonal but",
    ),
    ("Ea with strings", "vit", "orthogonal", lambda d: d["material"]["ea_matrix"][0].__setitem__(0, "1"), "numbers only"),
    ("Ea with bools", "vit", "orthogonal", lambda d: d["material"]["ea_matrix"][0].__setitem__(0, True), "numbers only"),
    ("Ea NaN", "vit", "orthogonal", lambda d: d["material"]["ea_matrix"][0].__setitem__(0, float("nan")), "non-finite number NaN"),
    ("shuffle Infinity", "block", None, lambda d: d["material"]["shuffle"].__setitem__(0, float("inf")), "non-finite number Infinity"),
    ("entropy_bits a string", "block", None, lambda d: d.__setitem__("entropy_bits", "lots"), "entropy_bits must be a number"),
    ("reproducible a string", "block", None, lambda d: d.__setitem__("reproducible", "no"), "reproducible must be true or false"),
    ("scheme a list", "block", None, lambda d: d.__setitem__("scheme", ["block"]), "scheme and fingerprint must be strings"),
]


@pytest.mark.parametrize(("scheme", "ea", "mutate", "message"), [pytest.param(*row[1:], id=row[0]) for row in HOSTILE])
def test_hostile_key_files_are_one_key_file_error(tmp_path, scheme, ea, mutate, message):
    path = _rewrite(_saved(tmp_path, scheme, ea), mutate)
    with pytest.raises(KeyFileError, match=message):
        keys.load(path)


def test_deeply_nested_key_files_are_refused(tmp_path):
    path = _saved(tmp_path)
    doc = json.loads(path.read_text())
    deep = "[" * 100_000 + "]" * 100_000  # past the JSON parser's recursion limit
    path.write_text(json.dumps({**doc, "material": "X"}).replace('"X"', deep))
    with pytest.raises(KeyFileError, match="nested too deeply"):
        keys.load(path)
    path.write_text(json.dumps({**doc, "material": {"shuffle": [[[[[[[[[[0]]]]]]]]]]}}))
    with pytest.raises(KeyFileError, match="nested deeper"):
        keys.load(path)


def test_integers_too_long_to_read_are_refused(tmp_path):
    path = _saved(tmp_path)
    path.write_text(path.read_text().replace('"block_size": 4', '"block_size": 4' + "0" * 5000, 1))
    with pytest.raises(KeyFileError, match="not valid JSON"):
        keys.load(path)


def test_key_info_refuses_invalid_material_in_one_line(tmp_path, capsys):
    for name, mutate in (
        ("not a permutation", lambda d: d["material"]["shuffle"].__setitem__(0, d["material"]["shuffle"][1])),
        ("wrong length", lambda d: d["material"]["shuffle"].append(48)),
    ):
        (tmp_path / name).mkdir()
        path = _rewrite(_saved(tmp_path / name), mutate)
        assert main(["key", "info", str(path)]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "not a permutation" in err[0]


def test_valid_keys_of_every_kind_load_back(tmp_path):
    for scheme, ea in (("block", None), ("vit", "permutation"), ("vit", "signed-permutation"), ("vit", "orthogonal")):
        key = generate_key(scheme, 4, 3, 8, ea=ea)
        assert keys.load(key.save(tmp_path / f"{scheme}{ea}.json")) == key


JUNK: list[Any] = [None, True, False, -1, 0, 1, 47, 48, 10**30, 0.5, 3.0, -0.0, "0", [], [0], {}, {"a": 1}, [[0]], 1e308]


def test_property_a_key_that_loads_is_a_key_that_works(tmp_path):
    """Seeded random edits of a valid key file (one field replaced by junk, an entry changed,
    dropped or duplicated; fingerprint recomputed): loading either refuses with KeyFileError or
    gives a key that encrypts and decrypts exactly. Nothing else may happen."""
    rng = random.Random(1234)
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    base = {(scheme, ea): _saved(tmp_path, scheme, ea).read_text() for scheme, ea in (("block", None), ("vit", "signed-permutation"), ("vit", "orthogonal"))}
    loaded = refused = 0
    for trial in range(400):
        (scheme, ea), text = rng.choice(sorted(base.items(), key=str))
        path = tmp_path / f"trial{trial}.json"
        path.write_text(text)

        def mutate(doc: dict[str, Any]) -> None:
            part = doc[rng.choice(["params", "material"])]
            name = rng.choice(sorted(part))
            value = part[name]
            action = rng.randrange(4)
            if action == 0 or not isinstance(value, list) or not value:
                part[name] = rng.choice(JUNK)
            elif action == 1:
                value[rng.randrange(len(value))] = rng.choice(JUNK)
            elif action == 2:
                value.pop(rng.randrange(len(value)))
            else:
                value.append(value[0])

        _rewrite(path, mutate)
        try:
            key = keys.load(path)
        except KeyFileError:
            refused += 1
            continue
        loaded += 1
        if key.params == json.loads(text)["params"]:
            y = encrypt_images(x.float() / 255, key)
            assert (decrypt_images(y, key) - x.float() / 255).abs().max() < 1e-5
    assert refused > 300  # almost every edit breaks a key; the few that load (e.g. a flip moved to a free position) work
