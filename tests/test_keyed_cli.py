"""``veilnet key new`` and ``veilnet keyed ...`` end to end (in process)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from veilnet import cli, data, keys, models
from veilnet.keyed import encrypt_images


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    models.save(models.create("convmixer", dim=16, depth=1, kernel_size=3, patch_size=4), "cm", classes=[f"c{i}" for i in range(10)])
    models.save(models.create("vit", image_size=32, patch_size=4, dim=48, depth=1, heads=2, mlp_dim=16), "vit")
    return tmp_path


def test_key_new_writes_a_private_key_and_refuses_to_overwrite(workdir, capsys) -> None:
    code, out, _ = run(capsys, "key", "new", "--scheme", "block", "--block-size", "4", "--channels", "3", "--image-size", "32", "-o", "k.json")
    assert code == 0 and "247.8 bits" in out and "sha256:" in out
    assert os.stat("k.json").st_mode & 0o777 == 0o600
    key = keys.load("k.json", scheme="block")
    assert key.params == {"block_size": 4, "channels": 3, "image_size": 32}
    assert str(key.material["shuffle"][:3])[1:-1] not in out  # the material is never printed
    code, _, err = run(capsys, "key", "new", "--scheme", "block", "--block-size", "4", "--channels", "3", "--image-size", "32", "-o", "k.json")
    assert code == 2 and "exists; pass --force" in err
    code, _, err = run(capsys, "key", "new", "--scheme", "vit", "--block-size", "5", "--channels", "3", "--image-size", "32", "-o", "v.json")
    assert code == 2 and "not divisible" in err


def test_transform_images_png_round_trip_and_npy(workdir, capsys) -> None:
    run(capsys, "key", "new", "--scheme", "block", "--block-size", "4", "--channels", "3", "--image-size", "32", "-o", "k.json")
    code, out, _ = run(capsys, "keyed", "transform-images", "digits", "--key", "k.json", "--limit", "4", "-o", "enc")
    assert code == 0 and "(png; no labels)" in out
    plain = data.load("digits", "test").images[:4]
    png = torch.from_numpy(np.array(Image.open("enc/00001.png"))).permute(2, 0, 1)
    assert torch.equal(png, encrypt_images(plain, keys.load("k.json"))[1])
    files = sorted(str(p) for p in (workdir / "enc").glob("*.png"))
    assert run(capsys, "keyed", "transform-images", *files, "--key", "k.json", "--decrypt", "-o", "dec")[0] == 0
    assert torch.equal(torch.from_numpy(np.array(Image.open("dec/00002.png"))).permute(2, 0, 1), plain[2])
    assert "labels" not in json.loads((workdir / "enc" / "manifest.json").read_text())
    run(capsys, "key", "new", "--scheme", "vit", "--block-size", "4", "--channels", "3", "--image-size", "32", "--ea", "orthogonal", "-o", "o.json")
    code, out, _ = run(capsys, "keyed", "transform-images", "digits", "--key", "o.json", "--limit", "2", "-o", "enco")
    assert code == 0 and np.load("enco/00000.npy").shape == (3, 32, 32)
    code, _, err = run(capsys, "keyed", "transform-images", "digits", "--key", "o.json", "--limit", "2", "-o", "enco")
    assert code == 2 and "exists" in err
    npys = sorted(str(p) for p in (workdir / "enco").glob("*.npy"))
    assert run(capsys, "keyed", "transform-images", *npys, "--key", "o.json", "--decrypt", "-o", "deco")[0] == 0
    assert torch.equal(torch.from_numpy(np.array(Image.open("deco/00001.png"))).permute(2, 0, 1), plain[1])


def test_transform_model_rekey_and_mismatches(workdir, capsys) -> None:
    for name, scheme in (("k1.json", "block"), ("k2.json", "block"), ("v.json", "vit")):
        run(capsys, "key", "new", "--scheme", scheme, "--block-size", "4", "--channels", "3", "--image-size", "32", "-o", name)
    assert run(capsys, "keyed", "transform-model", "cm", "--key", "k1.json", "-o", "cmk")[0] == 0
    card = models.card("cmk")
    assert card["extra"]["keyed"]["fingerprint"] == keys.load("k1.json").fingerprint
    assert "material" not in json.dumps(card) and "shuffle" not in json.dumps(card)
    assert run(capsys, "keyed", "rekey", "cmk", "--old-key", "k1.json", "--new-key", "k2.json", "-o", "cmk2")[0] == 0
    assert card["classes"] == models.card("cmk2")["classes"] == [f"c{i}" for i in range(10)]  # the class names travel with the card
    x = torch.rand(4, 3, 32, 32)
    plain, moved = models.load("cm"), models.load("cmk2")
    with torch.no_grad():
        assert (plain(x) - moved(encrypt_images(x, keys.load("k2.json")))).abs().max() <= 1e-4 * plain(x).abs().max()
    code, _, err = run(capsys, "keyed", "rekey", "cmk", "--old-key", "k2.json", "--new-key", "k1.json", "-o", "bad")
    assert code == 2 and "was transformed with key" in err and "not with key" in err
    code, _, err = run(capsys, "keyed", "transform-model", "cm", "--key", "v.json", "-o", "bad")
    assert code == 2 and "position embedding" in err
    code, _, err = run(capsys, "keyed", "transform-model", "cmk", "--key", "k2.json", "-o", "bad")
    assert code == 2 and "already transformed" in err


def test_evaluate_and_attacks(workdir, capsys) -> None:
    run(capsys, "key", "new", "--scheme", "vit", "--block-size", "4", "--channels", "3", "--image-size", "32", "--ea", "signed-permutation", "-o", "v.json")
    code, out, _ = run(capsys, "keyed", "evaluate", "vit", "--key", "v.json", "--data", "digits", "--n-per-class", "2", "--random-keys", "3", "-o", "ev")
    assert code == 0 and "random wrong keys" in out
    result = json.loads((workdir / "ev" / "evaluation.json").read_text())
    assert result["labels_identical"] and len(result["random_keys"]["accuracies"]) == 3
    assert (workdir / "ev" / "random_keys.png").exists()
    assert run(capsys, "keyed", "transform-model", "vit", "--key", "v.json", "-o", "vitk")[0] == 0
    code, out, _ = run(capsys, "keyed", "attack", "weight-matching", "vitk", "--plain", "vit", "--key", "v.json", "-o", "wm.json")
    assert code == 0 and json.loads((workdir / "wm.json").read_text())["score"]["exact"]
    assert out.startswith("Weight-matching attack on a vit key (block size 4, 3 channels, 32×32 images, Ea: signed-permutation).\n") and "{" not in out
    assert "The attacker had: the transformed model, the plain model it came from" in out and "Result: the whole key, exactly (block order 100.0%" in out
    code, out, _ = run(
        capsys, "keyed", "attack", "random-keys", "vitk", "--data", "digits", "--n-per-class", "2", "--random-keys", "2", "-o", "rk.json", "--json"
    )
    assert code == 0 and json.loads(out) == json.loads((workdir / "rk.json").read_text()) and len(json.loads(out)["accuracies"]) == 2
    code, _, err = run(capsys, "keyed", "attack", "random-keys", "vit", "--data", "digits", "-o", "rk2.json")
    assert code == 2 and "not a transformed model" in err
    run(capsys, "key", "new", "--scheme", "block", "--block-size", "4", "--channels", "3", "--image-size", "32", "-o", "b.json")
    code, out, _ = run(
        capsys, "keyed", "attack", "ciphertext-only", "--key", "b.json", "--data", "digits", "--encrypted", "50", "--reference", "50", "-o", "co.json"
    )
    result = json.loads((workdir / "co.json").read_text())
    assert code == 0 and result["decrypted_psnr"] > 40  # digits: grey, so channel swaps do not show
    assert "The attacker had: 50 encrypted images, 50 unrelated plain images" in out
    assert f"Decrypted with the estimate, the 50 images have PSNR {result['decrypted_psnr']:.1f} dB" in out
    score = result["score"]
    assert "Result: " + ("the whole key, exactly" if score["exact"] else f"{score['key_fraction']:.1%} of the key, not all of it") in out
    code, out, _ = run(capsys, "keyed", "attack", "known-plaintext", "--key", "v.json", "--data", "digits", "--pairs", "2", "--holdout", "2", "-o", "kp.json")
    result = json.loads((workdir / "kp.json").read_text())
    assert code == 0 and result["trials"][0]["pairs"] == 1
    assert "(plain, encrypted) image pairs (tried with 1, 2)" in out and "  1 pair: " in out and "of the pixels of 2 held-out images decrypted exactly" in out
    assert ("Result: the whole key, exactly, from" in out) == (result["pairs_needed"] is not None)


def test_transform_images_keeps_labels_out_of_the_server_folder(workdir, capsys) -> None:
    run(capsys, "key", "new", "--scheme", "block", "--block-size", "4", "--channels", "3", "--image-size", "32", "-o", "k.json")
    code, out, _ = run(capsys, "keyed", "transform-images", "digits", "--key", "k.json", "--limit", "3", "--labels", "labels.json", "-o", "enc")
    assert code == 0 and "not on the server" in out
    labels = data.load("digits", "test").labels[:3].tolist()
    assert json.loads((workdir / "labels.json").read_text()) == {"files": ["00000.png", "00001.png", "00002.png"], "labels": labels}
    server = {p.name: p.read_text(errors="replace") for p in (workdir / "enc").iterdir()}
    assert sorted(server) == ["00000.png", "00001.png", "00002.png", "manifest.json"]
    assert "label" not in server["manifest.json"]
    code, _, err = run(capsys, "keyed", "transform-images", "digits", "--key", "k.json", "--limit", "3", "--labels", "enc2/labels.json", "-o", "enc2")
    assert code == 2 and "inside the output folder" in err and not (workdir / "enc2").exists()
    assert "never labels" in " ".join(_help(capsys, "keyed", "transform-images").split())


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit):
        cli.main([*argv, "--help"])
    return capsys.readouterr().out


def test_transform_images_refuses_float_npy_holding_0_to_255(workdir, capsys) -> None:
    run(capsys, "key", "new", "--scheme", "block", "--block-size", "4", "--channels", "3", "--image-size", "32", "-o", "k.json")
    np.save("bright.npy", np.full((3, 32, 32), 200.0, dtype=np.float32))
    code, _, err = run(capsys, "keyed", "transform-images", "bright.npy", "--key", "k.json", "-o", "enc")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "[0, 1]" in err
    assert not (workdir / "enc").exists()
    np.save("ok.npy", np.full((3, 32, 32), 0.25, dtype=np.float32))
    assert run(capsys, "keyed", "transform-images", "ok.npy", "--key", "k.json", "-o", "enc")[0] == 0


def test_rekey_refuses_a_plain_model(workdir, capsys) -> None:
    for name in ("k1.json", "k2.json"):
        run(capsys, "key", "new", "--scheme", "block", "--block-size", "4", "--channels", "3", "--image-size", "32", "-o", name)
    code, _, err = run(capsys, "keyed", "rekey", "cm", "--old-key", "k1.json", "--new-key", "k2.json", "-o", "out")
    assert code == 2 and "plain model" in err and len(err.strip().splitlines()) == 1
    assert not list(workdir.glob("out*"))


def test_seeded_key_and_seeded_evaluation_use_different_keys(workdir, capsys) -> None:
    """`key new --seed 0` then `keyed evaluate --seed 0`: no "wrong" key is the key itself."""
    run(capsys, "key", "new", "--scheme", "block", "--block-size", "4", "--channels", "3", "--image-size", "32", "--seed", "0", "-o", "k.json")
    code, _, _ = run(
        capsys, "keyed", "evaluate", "cm", "--key", "k.json", "--data", "digits", "--n-per-class", "1", "--random-keys", "3", "--seed", "0", "-o", "ev"
    )
    assert code == 0
    result = json.loads((workdir / "ev" / "evaluation.json").read_text())
    assert keys.load("k.json").fingerprint not in result["random_keys"]["fingerprints"]
    assert len(set(result["random_keys"]["fingerprints"])) == 3


def test_keyed_and_key_commands_parse_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom veilnet import cli\nfor argv in (['key', 'new', '--help'], ['keyed', 'attack', 'known-plaintext', "
        "'--help']):\n    try:\n        cli.main(argv)\n    except SystemExit:\n        pass\nprint('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def _one_line(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, _, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_keys_and_models_that_do_not_fit_are_one_line(workdir, capsys) -> None:
    run(capsys, "key", "new", "--scheme", "block", "--block-size", "2", "--channels", "3", "--image-size", "32", "-o", "k2.json")
    run(capsys, "key", "new", "--scheme", "block", "--block-size", "4", "--channels", "3", "--image-size", "32", "-o", "k4.json")
    run(capsys, "key", "new", "--scheme", "block", "--block-size", "4", "--channels", "3", "--image-size", "32", "-o", "other.json")
    assert "patch size 4" in _one_line(capsys, "keyed", "evaluate", "cm", "--key", "k2.json", "--data", "digits", "-o", "ev")
    assert "patch size 4" in _one_line(capsys, "keyed", "transform-model", "cm", "--key", "k2.json", "-o", "cmk")
    run(capsys, "key", "new", "--scheme", "block", "--block-size", "4", "--channels", "3", "--image-size", "28", "-o", "k28.json")
    assert "N×3×28×28" in _one_line(capsys, "keyed", "transform-images", "digits", "--key", "k28.json", "--limit", "1", "-o", "enc")
    assert run(capsys, "keyed", "transform-model", "cm", "--key", "k4.json", "-o", "cmk")[0] == 0
    models.save(models.create("convmixer", dim=8, depth=1, kernel_size=3, patch_size=4), "small")
    assert "does not fit" in _one_line(capsys, "keyed", "attack", "weight-matching", "cmk", "--plain", "small", "--key", "k4.json", "-o", "wm.json")
    assert "architecture" in _one_line(capsys, "keyed", "attack", "weight-matching", "cmk", "--plain", "vit", "--key", "k4.json", "-o", "wm.json")
    assert "not with key" in _one_line(capsys, "keyed", "attack", "weight-matching", "cmk", "--plain", "cm", "--key", "other.json", "-o", "wm.json")
    assert "patch size" in _one_line(capsys, "keyed", "attack", "weight-matching", "cmk", "--plain", "cm", "--key", "k2.json", "-o", "wm.json")
    assert not (workdir / "wm.json").exists()
