"""The browser client (src/veilnet/serve/static/): the page encrypts in the browser, only the
ciphertext leaves it.

* Bit for bit: the page's encryption (veilnet.js, run in headless Chromium and, where ``node``
  exists, in Node) gives the tensor ``veilnet.keyed.encrypt_images`` gives for the same key file
  and images, for every key kind the page takes (block; ViT with a permutation or a
  signed-permutation Ea), and its .npy body is one the server's codec reads.
* End to end in headless Chromium (Playwright driving the system's ``chromium``): ``veilnet
  serve`` on a free loopback port behind a recording TCP proxy; the page gets a key file, three
  PNG images and the token, and shows the plain model's labels on the plain images; every byte
  the browser sent holds the encrypted tensor and none of the key material or the plain pixels.
* One clear sentence for a wrong key, a refused token, an unreadable image, an unreachable server.

Without Chromium or the playwright package the browser tests skip with a message; with CI=true
they fail instead (.ci/run installs Chromium). ``VEILNET_SCREENSHOT=PATH`` saves the page at
1280×900 after it classified six digits, one of another size (docs/browser-client.png was made so).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from serving import free_port, serving
from veilnet import data, keys, metrics, models
from veilnet.keyed import encrypt_images, generate_key, public_params
from veilnet.keyed.transform import transform_model
from veilnet.serve import ServedModel, create_app
from veilnet.serve.app import STATIC
from veilnet.serve.codec import NPY, read_tensor

SCRIPT = Path(STATIC) / "veilnet.js"
TOKEN = "browser-token-0123456789abcdef"
CI = os.environ.get("CI") == "true"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: The key kinds the page encrypts with: (scheme, Ea).
KINDS = [("block", None), ("vit", "permutation"), ("vit", "signed-permutation")]


def _missing(what: str) -> None:
    """Skip (fail under CI=true) for a missing browser part."""
    message = f"{what}; the browser client's tests need it (apt-get install chromium; pip install -e '.[test]')"
    if CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium (the system's) for the module."""
    if CHROMIUM is None:
        _missing("no chromium on PATH")
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        _missing("the playwright package is not installed")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _test_images() -> torch.Tensor:
    """Fixed test images: two digits and one of uniform noise (every byte value, both flips)."""
    noise = torch.randint(0, 256, (1, 3, 32, 32), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)
    return torch.cat([data.load("digits", "test").images[:2], noise])


def _key(scheme: str, ea: str | None, seed: int) -> keys.Key:
    return generate_key(scheme, 4, 3, 32, ea=ea, seed=seed)


#: Node: read {key, images, shape} from stdin, print the page's .npy body (base64).
NODE_HARNESS = """
const core = require(process.argv[1]);
let input = "";
process.stdin.on("data", (d) => (input += d)).on("end", () => {
  const { key, images, shape } = JSON.parse(input);
  const k = core.parseKey(key), map = core.indexMap(k), n = map.index.length;
  const all = new Float32Array(images.length * n);
  images.forEach((px, i) => all.set(core.encryptPixels(Uint8Array.from(px), map), i * n));
  process.stdout.write(Buffer.from(core.npyBody(all, shape)).toString("base64"));
});
"""

#: The browser: the same, from the page's script loaded into a blank page.
PAGE_HARNESS = """({ key, images, shape }) => {
  const core = VeilnetCore, k = core.parseKey(key), map = core.indexMap(k), n = map.index.length;
  const all = new Float32Array(images.length * n);
  images.forEach((px, i) => all.set(core.encryptPixels(Uint8Array.from(px), map), i * n));
  const body = core.npyBody(all, shape);
  let s = "";
  for (const b of body) s += String.fromCharCode(b);
  return btoa(s);
}"""


def _engines() -> list:
    return [
        "chromium",
        pytest.param("node", marks=pytest.mark.skipif(shutil.which("node") is None, reason="no node on PATH (the chromium run covers the page)")),
    ]


@pytest.fixture(scope="module")
def blank_page(browser):
    page = browser.new_page()
    page.set_content("<!doctype html><title>harness</title>")
    page.add_script_tag(path=str(SCRIPT))
    yield page
    page.close()


@pytest.mark.parametrize("engine", _engines())
@pytest.mark.parametrize(("scheme", "ea"), KINDS, ids=["block", "vit-permutation", "vit-signed-permutation"])
def test_page_encryption_equals_python_bit_for_bit(engine: str, scheme: str, ea: str | None, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    key = _key(scheme, ea, seed=11)
    path = key.save(tmp_path / "key.json")
    images = _test_images()
    payload = {"key": path.read_text(), "images": [img.reshape(-1).tolist() for img in images], "shape": list(images.shape)}
    if engine == "node":
        done = subprocess.run(["node", "-e", NODE_HARNESS, str(SCRIPT)], input=json.dumps(payload), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        body = base64.b64decode(done.stdout)
    else:
        body = base64.b64decode(request.getfixturevalue("blank_page").evaluate(PAGE_HARNESS, payload))
    sent = read_tensor(body, NPY, dtype="float32", item_shape=(3, 32, 32))  # the server's codec reads it
    want = encrypt_images(metrics.as_float(images), keys.load(path)).float()
    assert sent.dtype == torch.float32 and sent.shape == want.shape
    assert np.array_equal(sent.numpy().view(np.uint32), want.numpy().view(np.uint32))  # bit for bit
    assert not torch.equal(sent, metrics.as_float(images))  # (not the identity)


def test_page_refuses_keys_it_cannot_encrypt_with(blank_page, tmp_path: Path) -> None:
    """An orthogonal Ea, a tampered file and a non-key file get one sentence each, never a wrong ciphertext."""
    orthogonal = generate_key("vit", 4, 1, 8, ea="orthogonal", seed=1).to_json()
    doc = json.loads(_key("block", None, seed=2).to_json())
    doc["material"]["shuffle"][:2] = doc["material"]["shuffle"][1::-1]  # a swap: still a permutation
    tampered = json.dumps(doc)
    ask = """async (text) => { try { await VeilnetCore.verifyFingerprint(VeilnetCore.parseKey(text)); return "accepted"; } catch (e) { return e.message; } }"""
    assert "use `veilnet query`" in blank_page.evaluate(ask, orthogonal)
    assert "not a veilnet key file" in blank_page.evaluate(ask, '{"hello": 1}')
    # class names from /v1/info, numbers for a card without them
    assert blank_page.evaluate("() => [VeilnetCore.className(['cat', 'dog'], 1), VeilnetCore.className(null, 3)]") == ["dog", "class 3"]
    if blank_page.evaluate("() => Boolean(globalThis.crypto && crypto.subtle)"):
        assert "does not match its fingerprint" in blank_page.evaluate(ask, tampered)
        assert blank_page.evaluate(ask, _key("vit", "signed-permutation", seed=3).to_json()) == "accepted"


# --- the page, end to end -------------------------------------------------------------------------


class RecordingProxy:
    """A TCP proxy on a free loopback port in front of the server: keeps every byte each
    connection sent to the server (what the server received, headers and bodies); ``stop``
    closes it and every connection (the server is then unreachable for the page)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.streams: list[bytearray] = []
        self.sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.stopped:
                client.close()
                return
            server = socket.create_connection(self.upstream)
            record = bytearray()
            with self.lock:
                self.streams.append(record)
                self.sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, record), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, None), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, record: bytearray | None) -> None:
        try:
            while chunk := src.recv(65536):
                if record is not None:
                    record += chunk
                dst.sendall(chunk)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def received(self) -> list[bytes]:
        with self.lock:
            return [bytes(s) for s in self.streams]

    def stop(self) -> None:
        self.stopped = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, browser):
    """A small ConvMixer trained a little on digits, its block-keyed transform served by
    ``veilnet serve`` behind a :class:`RecordingProxy`; the key file and three PNG test images."""
    from veilnet.training.classifier import TrainConfig, train_epochs

    root = tmp_path_factory.mktemp("browser")
    torch.manual_seed(0)
    plain = models.create("convmixer", dim=16, depth=1, kernel_size=3, patch_size=4, num_classes=10)
    epochs = 12 if os.environ.get("VEILNET_SCREENSHOT") else 3  # the screenshot's model: right labels, higher confidence
    train_epochs(
        plain, data.load("digits", "train"), TrainConfig(epochs=epochs, batch_size=64, optimizer="adam", lr=1e-2, weight_decay=0.0, augment=False, seed=1)
    )
    plain.eval()
    key = _key("block", None, seed=7)
    key.save(root / "key.json")
    classes = data.load("digits", "test").classes
    models.save(transform_model(plain, key), root / "served", classes=classes, extra={"keyed": public_params(key)})
    (root / "tokens.txt").write_text(f"{TOKEN}\n")
    images = data.load("digits", "test").images[[0, 1, 5]]
    pngs = []
    for i, img in enumerate(images):
        pngs.append(root / f"photo-{i}.png")
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(pngs[-1])
    port = free_port()
    with serving([str(root / "served"), "--token-file", str(root / "tokens.txt")], port=port, log=root / "server.log"):
        proxy = RecordingProxy(("127.0.0.1", port))
        probs = torch.softmax(metrics.predict(plain, images).double(), dim=1)
        yield {"root": root, "key": key, "images": images, "pngs": pngs, "proxy": proxy, "probs": probs, "browser": browser, "classes": classes}
        proxy.stop()


def _submit(deployment: dict, key: Path, images: list[Path], token: str):
    """Open the page, give it a key file, images and a token, submit; returns the page once it
    shows results or an error."""
    page = deployment["browser"].new_page(viewport={"width": 1280, "height": 900})
    page.goto(deployment["proxy"].url + "/")
    page.set_input_files("#key", str(key))
    page.wait_for_function("() => document.getElementById('key-info').textContent || !document.getElementById('error').hidden")
    page.set_input_files("#images", [str(p) for p in images])
    page.fill("#token", token)
    page.click("#classify")
    page.wait_for_function(
        "() => !document.getElementById('classify').disabled && (document.querySelector('.result') || !document.getElementById('error').hidden)", timeout=20000
    )
    return page


def test_page_shows_the_plain_models_labels_and_sends_only_ciphertext(deployment: dict) -> None:
    root, key, images = deployment["root"], deployment["key"], deployment["images"]
    page = _submit(deployment, root / "key.json", deployment["pngs"], TOKEN)
    assert page.locator("#error").is_hidden(), page.locator("#error").text_content()
    key_line = page.locator("#key-info").text_content()  # in plain words, then the shortened fingerprint, checked in the page
    assert key_line.startswith("Your key scrambles each 32×32 image here in this page: it shuffles the pixels inside every 4×4 block and inverts half of them.")
    assert key_line.endswith(f"Key {key.fingerprint[:19]}… (verified).")
    assert (
        page.locator("#model-info").text_content() == "The server runs a convmixer image classifier that tells apart 10 classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9."
    )
    assert page.locator(".result").first.locator(".shot small").all_text_contents() == ["yours, stays here", "sent to the server"]  # the legend, per result
    shown = page.eval_on_selector_all(".result", "els => els.map(e => [Number(e.dataset.label), Number(e.dataset.confidence)])")
    probs = deployment["probs"]
    assert [label for label, _ in shown] == probs.argmax(1).tolist()
    assert np.allclose([c for _, c in shown], probs.max(1).values.numpy(), atol=1e-5)
    assert page.locator(".result .label").all_text_contents() == [deployment["classes"][i] for i in probs.argmax(1).tolist()]  # the card's names
    page.close()

    streams = deployment["proxy"].received()
    everything = b"".join(streams)
    # positive controls: the token, and the ciphertext Python computes from the same PNGs, bit for bit
    assert f"Bearer {TOKEN}".encode() in everything
    cipher = encrypt_images(metrics.as_float(images), key).float().numpy().tobytes()
    assert any(cipher in s for s in streams), "the predict body is not veilnet.keyed's ciphertext of the images"
    # nothing of the key: its file, its material as JSON (either spacing) or as binary integers
    material = key.material
    secrets = [(root / "key.json").read_bytes()]
    for name, values in material.items():
        secrets += [json.dumps(values).encode(), json.dumps(values, separators=(",", ":")).encode(), f'"{name}"'.encode()]
        secrets += [np.asarray(values, dtype=dt).tobytes() for dt in ("<i4", "<i8", "<f4", "u1")]
    # nothing of the plain images: the files, their pixels as bytes (C×H×W and H×W×C) or as floats
    plain = [p.read_bytes() for p in deployment["pngs"]]
    for img in images:
        plain += [img.numpy().tobytes(), img.permute(1, 2, 0).numpy().tobytes(), metrics.as_float(img[None]).numpy().tobytes()]
        plain += [img[c].numpy().tobytes() for c in range(3)]
    for s in streams + [everything]:
        assert not [i for i, secret in enumerate(secrets) if secret in s], "key material reached the server"
        assert not [i for i, pixels in enumerate(plain) if pixels in s], "plain pixels reached the server"


def test_page_says_which_images_it_cropped_and_scaled(deployment: dict) -> None:
    """An image of another size is classified after a centre crop and scaling, and its result says
    so (original size → model size); an image of the model's size says nothing. The page at
    1280×900 is the README's screenshot (``VEILNET_SCREENSHOT``)."""
    root, pngs = deployment["root"], deployment["pngs"]
    more = []
    for i, img in enumerate(data.load("digits", "test").images[[2, 3]]):
        more.append(root / f"digit-{i}.png")
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(more[-1])
    wide = root / "wide-photo.png"
    Image.open(pngs[1]).resize((80, 60)).save(wide)
    page = _submit(deployment, root / "key.json", [*pngs, *more, wide], TOKEN)
    assert page.locator("#error").is_hidden(), page.locator("#error").text_content()
    notes = page.eval_on_selector_all(".result", "els => els.map(e => [e.querySelector('.name').textContent, e.querySelector('.resized')?.textContent])")
    assert notes == [*([p.name, None] for p in [*pngs, *more]), [wide.name, "cropped to a square and scaled: 80×60 → 32×32"]]
    if os.environ.get("VEILNET_SCREENSHOT"):
        page.screenshot(path=os.environ["VEILNET_SCREENSHOT"])
    page.close()


def _error(deployment: dict, key: Path, images: list[Path], token: str) -> str:
    page = _submit(deployment, key, images, token)
    try:
        assert page.locator(".result").count() == 0
        return page.locator("#error").text_content()
    finally:
        page.close()


def test_page_says_wrong_key_refused_token_and_unreadable_image(deployment: dict) -> None:
    root, pngs = deployment["root"], deployment["pngs"]
    other = _key("block", None, seed=8).save(root / "other-key.json")
    assert _error(deployment, other, pngs[:1], TOKEN).startswith("Wrong key for this model: it was transformed with key sha256:")
    assert (
        _error(deployment, root / "key.json", pngs[:1], "not-the-token-0123456789")
        == "The server refused the token: paste a token from the server's token file."
    )
    notes = root / "notes.png"
    notes.write_text("not an image")
    assert _error(deployment, root / "key.json", [pngs[0], notes], TOKEN) == "notes.png: this file is not an image the browser can read."


def test_page_keeps_the_reason_a_key_file_was_refused_until_the_file_changes(deployment: dict) -> None:
    """A truncated key file: its sentence stays through a click on classify; a good file clears it."""
    root = deployment["root"]
    good = root / "key.json"
    truncated = root / "truncated-key.json"
    truncated.write_bytes(good.read_bytes()[:100])
    page = _submit(deployment, truncated, deployment["pngs"][:1], TOKEN)
    reason = "This key file is not valid JSON (truncated or corrupt); pick the key file that `veilnet key new` wrote."
    assert page.locator("#error").text_content() == reason and page.locator(".result").count() == 0
    page.click("#classify")  # again: still the reason, not "Pick your key file first."
    page.wait_for_function("() => !document.getElementById('classify').disabled && !document.getElementById('error').hidden")
    assert page.locator("#error").text_content() == reason
    page.set_input_files("#key", str(good))
    page.wait_for_function("() => document.getElementById('key-info').textContent")
    assert page.locator("#error").is_hidden()
    page.close()


def test_page_says_server_unreachable(deployment: dict) -> None:
    """Last in the module: the proxy (the server's address for the page) goes away."""
    page = deployment["browser"].new_page()
    page.goto(deployment["proxy"].url + "/")
    page.set_input_files("#key", str(deployment["root"] / "key.json"))
    page.wait_for_function("() => document.getElementById('key-info').textContent")
    page.set_input_files("#images", [str(deployment["pngs"][0])])
    page.fill("#token", TOKEN)
    deployment["proxy"].stop()
    page.click("#classify")
    page.wait_for_function("() => !document.getElementById('error').hidden", timeout=20000)
    assert page.locator("#error").text_content() == "The server cannot be reached: check that `veilnet serve` is running and reload this page."
    page.close()


# --- the mount (no browser) -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def served() -> ServedModel:
    key = _key("block", None, seed=1)
    model = transform_model(models.create("convmixer", dim=8, depth=1, kernel_size=3, patch_size=4, num_classes=10), key)
    return ServedModel.from_model(model, {"architecture": "convmixer", "extra": {"keyed": public_params(key)}})


def test_page_is_served_without_token_outside_the_schema_and_off_with_no_ui(served: ServedModel) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(served, tokens=[TOKEN])) as client:
        page = client.get("/")
        assert page.status_code == 200 and 'src="static/veilnet.js"' in page.text
        assert "connect-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/static/veilnet.js").text == SCRIPT.read_text()
        assert client.get("/static/style.css").status_code == 200
        assert set(client.get("/openapi.json").json()["paths"]) == {"/healthz", "/v1/info", "/v1/predict"}
        assert client.get("/v1/info").status_code == 401  # the API still needs the token
    with TestClient(create_app(served, tokens=[TOKEN], ui=False)) as client:
        assert client.get("/").status_code == 404 and client.get("/static/veilnet.js").status_code == 404


def test_cli_no_ui_reaches_the_server(served: ServedModel, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import veilnet.serve.app as app_module
    from veilnet.cli import main

    calls: list[bool] = []
    monkeypatch.setattr(app_module, "run", lambda *a, **kw: calls.append(kw["ui"]))
    monkeypatch.setattr(app_module.ServedModel, "load", classmethod(lambda cls, path, device="cpu", compile=False, chunk=None: served))
    for extra in ([], ["--no-ui"]):
        assert main(["serve", str(tmp_path / "model"), "--no-auth", "--port", "0", *extra]) == 0
    assert calls == [True, False]
