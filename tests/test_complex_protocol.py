"""veilnet.complex.protocol and the complex kind of veilnet.serve: the split deployment of
"Interpretable Complex-Valued Neural Networks for Privacy Protection" (ICLR 2020, Eq. 1–3).

The protocol is exact for any weights, so small untrained networks do: the device's decoded
logits equal the network run in one process with the same θ and counterparts; a wrong θ gives
other logits and labels; a sample is never its own counterpart; the server's files hold no
encoder or decoder tensor; the request body is x and nothing else.
"""

from __future__ import annotations

import json
import math
import stat
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from veilnet import models
from veilnet.cli import main
from veilnet.complex import protocol
from veilnet.complex.protocol import BatchSecret, Device, Server, split_model
from veilnet.errors import ConfigError, KeyMismatchError, ModelFormatError, ShapeError
from veilnet.serve import Client, ServedModel, codec, create_app, kinds, local_server


def _net(name: str = "complex-lenet", seed: int = 0, **kwargs: object) -> nn.Module:
    torch.manual_seed(seed)
    net = models.create(name, **({"width": 0.25} | kwargs)).eval()
    with torch.no_grad():  # non-trivial running statistics, as after training
        for m in net.modules():
            if hasattr(m, "running_power"):
                m.running_power.uniform_(0.5, 2.0)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return net


def _images(n: int, seed: int, shape: tuple[int, int, int] = (3, 32, 32)) -> torch.Tensor:
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return float((a - b).abs().max()) <= 1e-4 * float(b.abs().max())


@pytest.mark.parametrize("name", ["complex-lenet", "complex-resnet20-alpha", "complex-resnet20-beta"])
def test_device_and_server_compute_the_network_run_in_one_process(name: str) -> None:
    net = _net(name)
    images, pool = _images(6, 1), _images(5, 2)
    device, server = Device(net, pool, seed=3), Server(net)
    x, secret = device.encode(images)
    assert x.dtype == torch.float32 and tuple(x.shape[1:]) == device.input_shape and x.shape[1] == 2
    logits = device.decode(server.process(x), secret)
    with torch.no_grad():
        reference = net(images.float() / 255, theta=secret.theta.float(), counterpart=device.counterparts(secret))
        plain_b = net(images.float() / 255, theta=0.0, counterpart=device.counterparts(secret))
    assert _close(logits, reference)
    assert _close(logits, plain_b)  # Eq. 4: the decoded output does not depend on θ
    # x is Eq. 2 exactly: e^{iθ}(a + b·i)
    with torch.no_grad():
        a = net.encoder(images.float() / 255)
    b = device.counterparts(secret)
    t = secret.theta.float().view(-1, *([1] * (a.dim() - 1)))
    assert torch.allclose(x[:, 0], torch.cos(t) * a - torch.sin(t) * b, atol=1e-5)
    assert torch.allclose(x[:, 1], torch.sin(t) * a + torch.cos(t) * b, atol=1e-5)


def test_a_wrong_angle_decodes_to_other_logits_and_labels() -> None:
    net = _net()
    images = _images(64, 4)
    device, server = Device(net, _images(16, 5), seed=0), Server(net)
    x, secret = device.encode(images)
    h = server.process(x)
    right = device.decode(h, secret)
    for offset in (math.pi / 2, math.pi, 1.0):
        wrong = device.decode(h, BatchSecret(theta=secret.theta + offset, counterpart=secret.counterpart))
        assert float((wrong - right).norm() / right.norm()) > 0.5
        assert float((wrong.argmax(1) == right.argmax(1)).float().mean()) < 0.7
    random = device.decode(h, BatchSecret(theta=torch.rand(64, dtype=torch.float64) * 2 * math.pi, counterpart=secret.counterpart))
    assert float((random.argmax(1) == right.argmax(1)).float().mean()) < 0.7


def test_angles_are_uniform_fresh_and_reproducible_only_with_a_seed() -> None:
    net = _net()
    pool, images = _images(8, 6), _images(400, 7)
    thetas = [Device(net, pool, seed=s).encode(images)[1] for s in (None, None, 0, 0, 1)]
    for s in thetas:
        assert s.theta.dtype == torch.float64 and bool(((s.theta >= 0) & (s.theta < 2 * math.pi)).all())
        assert len(set(s.theta.tolist())) == 400
    t = thetas[0].theta
    assert abs(float(t.mean()) - math.pi) < 0.3 and abs(float(t.std()) - 2 * math.pi / math.sqrt(12)) < 0.2  # U[0, 2π)
    assert not torch.equal(thetas[0].theta, thetas[1].theta)  # the OS's CSPRNG: fresh every time
    assert torch.equal(thetas[2].theta, thetas[3].theta) and torch.equal(thetas[2].counterpart, thetas[3].counterpart)
    assert not torch.equal(thetas[2].theta, thetas[4].theta)
    # every pool entry is used; the same device draws anew for the same images
    assert set(thetas[0].counterpart.tolist()) == set(range(8))
    device = Device(net, pool, seed=0)
    one, two = device.encode(images[:10])[1], device.encode(images[:10])[1]
    assert not torch.equal(one.theta, two.theta)
    # a seeded device gives each sample the same draws however the batch is cut
    whole = Device(net, pool, seed=9).encode(images[:15])[1]
    cut = Device(net, pool, seed=9)
    parts = [cut.encode(images[i : i + 5])[1] for i in (0, 5, 10)]
    assert torch.equal(whole.theta, torch.cat([p.theta for p in parts]))
    assert torch.equal(whole.counterpart, torch.cat([p.counterpart for p in parts]))


def test_a_sample_is_never_its_own_counterpart() -> None:
    net = _net()
    images = _images(10, 8)
    pool = torch.cat([images, _images(2, 9)])  # the pool holds every query image and two others
    device = Device(net, pool, seed=0)
    with torch.no_grad():
        a = net.encoder(images.float() / 255)
    for _ in range(20):
        x, secret = device.encode(images)
        assert bool((secret.counterpart != torch.arange(10)).all())
        b = device.counterparts(secret)
        assert bool(((b - a).flatten(1).norm(dim=1) > 1e-3 * a.flatten(1).norm(dim=1)).all())
    # without the exclusion some sample would have drawn itself (10 of 12 entries, 20 rounds)
    lone = Device(net, images[:1], seed=0)
    with pytest.raises(ConfigError, match="no image other than sample 0"):
        lone.encode(images[:1])
    x, secret = lone.encode(images[1:3])  # other images may use it
    assert secret.counterpart.tolist() == [0, 0]


def test_pool_and_images_are_checked() -> None:
    net = _net()
    with pytest.raises(ConfigError, match="no counterpart pool"):
        Device(net)
    with pytest.raises(ShapeError, match="takes 3×32×32"):
        Device(net, _images(4, 0, (1, 32, 32)))
    with pytest.raises(ShapeError, match="P×C×H×W"):
        Device(net, torch.zeros(3, 32, 32))
    device = Device(net, _images(4, 0))
    with pytest.raises(ShapeError, match="N×3×32×32"):
        device.encode(_images(2, 1, (3, 16, 16)))
    x, secret = device.encode(_images(3, 1))
    with pytest.raises(ShapeError, match="3 encoded samples"):
        device.decode(torch.zeros(2, 2, 10), secret)
    assert repr(secret) == "BatchSecret(N=3)"  # no angle in logs


def test_split_files_hold_each_role_only(tmp_path: Path) -> None:
    net = _net("complex-resnet20-alpha")
    models.save(net, tmp_path / "net", data="digits", metrics={"accuracy": 0.5}, input_shape=(3, 32, 32))
    pool = _images(7, 10)
    files = split_model(tmp_path / "net.json", tmp_path / "deploy", pool=pool)
    assert files.server == tmp_path / "deploy/server.safetensors" and files.device == tmp_path / "deploy/device.safetensors"

    server_tensors = safetensors.torch.load_file(files.server)
    assert set(server_tensors) == {f"processor.{k}" for k in net.processor.state_dict()}
    for name, tensor in {**net.encoder.state_dict(), **net.decoder.state_dict()}.items():
        if tensor.numel() > 1:  # no encoder or decoder tensor is in the server's file, under any name
            assert not any(t.shape == tensor.shape and torch.equal(t, tensor) for t in server_tensors.values()), name
    server_card = json.loads(files.server.with_suffix(".json").read_text())
    assert server_card["architecture"] == "complex-processor" and server_card["data"] is None and server_card["metrics"] == {}
    assert server_card["extra"]["complex"] == {
        "architecture": "complex-resnet20-alpha",
        "input_shape": [2, 4, 32, 32],
        "processor_sha256": protocol.processor_fingerprint(net.processor),
    }

    device_tensors = safetensors.torch.load_file(files.device)
    assert {k.split(".")[0] for k in device_tensors} == {"encoder", "decoder", "pool"}
    assert torch.equal(device_tensors["pool"], pool)
    for path in (files.device, files.device.with_suffix(".json")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    device_card = json.loads(files.device.with_suffix(".json").read_text())
    assert device_card["input_shape"] == [3, 32, 32] and device_card["data"] == "digits"

    # the files rebuild the same computation; the stored pool is the device's
    device, server = Device(files.device, seed=0), Server(files.server)
    reference = Device(net, pool, seed=0)
    images = _images(5, 11)
    x, secret = device.encode(images)
    x2, secret2 = reference.encode(images)
    assert torch.equal(x, x2) and torch.equal(secret.theta, secret2.theta)
    assert _close(device.decode(server.process(x), secret), reference.decode(Server(net).process(x2), secret2))
    assert device.fingerprint == server_card["extra"]["complex"]["processor_sha256"]

    with pytest.raises(ModelFormatError, match="not a complex-valued network's device part"):
        Device(files.server)
    with pytest.raises(ModelFormatError, match="already a part"):
        split_model(files.server, tmp_path / "again")
    with pytest.raises(Exception, match="exists"):
        split_model(net, tmp_path / "deploy", pool=pool)
    with pytest.raises(ShapeError, match="disagree"):
        split_model(tmp_path / "net.json", tmp_path / "other", pool=_images(3, 0, (3, 16, 16)))  # the card says 3×32×32


def test_split_without_a_pool_needs_one_on_the_device(tmp_path: Path) -> None:
    net = _net()
    files = split_model(net, tmp_path / "d")  # complex-lenet's arguments give 3×32×32
    assert "pool" not in safetensors.torch.load_file(files.device)
    with pytest.raises(ConfigError, match="no counterpart pool"):
        Device(files.device)
    device = Device(files.device, _images(4, 0))
    assert device.pool_size == 4 and device.image_shape == (3, 32, 32)
    with pytest.raises(ConfigError, match="image shape of complex-resnet20-alpha is unknown"):
        split_model(_net("complex-resnet20-alpha"), tmp_path / "r")
    with pytest.raises(ModelFormatError, match="complex-valued network"):
        split_model(models.create("lenet"), tmp_path / "plain")


def test_processor_parts_load_strictly_and_only_as_complex_processors(tmp_path: Path) -> None:
    files = split_model(_net(), tmp_path / "d", pool=_images(3, 0))
    part = models.load(files.server)
    assert isinstance(part, protocol.ProcessorPart) and not any(isinstance(m, type(_net().encoder)) for m in part.modules())
    with pytest.raises(ConfigError, match="model=NAME"):
        models.create("complex-processor")
    with pytest.raises(ConfigError, match="not lenet"):
        models.create("complex-processor", model="lenet")
    with pytest.raises(ConfigError, match="pool_shape"):
        models.create("complex-device", model="complex-lenet", pool_shape=[3, 32])


# --------------------------------------------------------------------------------------------
# Through the service


class _Recorder:
    """An ASGI wrapper that keeps every request's headers and body, as a curious server would."""

    def __init__(self, app: object) -> None:
        self.app = app
        self.requests: list[tuple[str, dict[str, str], bytes]] = []

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)  # type: ignore[operator]
        body = bytearray()
        record = (scope["path"], {k.decode(): v.decode() for k, v in scope["headers"]}, body)
        self.requests.append(record)  # type: ignore[arg-type]

        async def recording() -> dict:
            message = await receive()  # type: ignore[operator]
            if message["type"] == "http.request":
                body.extend(message.get("body", b""))
            return message

        await self.app(scope, recording, send)  # type: ignore[operator]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("complex-deploy")
    net = _net()
    pool = _images(12, 20)
    files = split_model(net, root / "deploy", pool=pool)
    return {"root": root, "net": net, "pool": pool, "files": files}


def test_labels_through_the_service_are_the_networks_and_the_body_is_only_x(deployment: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    net, files = deployment["net"], deployment["files"]
    served = ServedModel.load(files.server)
    assert served.expectation.kind == "complex" and served.expectation.input_shape == (2, 2, 14, 14)
    assert served.expectation.params == {"architecture": "complex-lenet", "processor_sha256": protocol.processor_fingerprint(net.processor)}
    recorder = _Recorder(create_app(served, tokens=None))
    sent: list[tuple[torch.Tensor, BatchSecret]] = []
    encode = Device.encode

    def spy(self: Device, images: torch.Tensor) -> tuple[torch.Tensor, BatchSecret]:
        out = encode(self, images)
        sent.append(out)
        return out

    monkeypatch.setattr(Device, "encode", spy)
    images = _images(10, 21)
    with local_server(recorder) as url:  # type: ignore[arg-type]
        device = Device(files.device, seed=5)
        for encoding, media in (("npy", codec.NPY), ("safetensors", codec.SAFETENSORS)):
            recorder.requests.clear()
            sent.clear()
            with Client(url, device, encoding=encoding) as client:
                logits = client.logits(images)
                info = client.info()
            assert info["input"] == {"shape": [None, 2, 2, 14, 14], "dtype": "float32"}
            assert set(info["params"]) == {"architecture", "processor_sha256"}
            ((x, secret),) = sent
            with torch.no_grad():
                reference = net(images.float() / 255, theta=secret.theta.float(), counterpart=device.counterparts(secret))
            assert _close(logits, reference) and torch.equal(logits.argmax(1), reference.argmax(1))
            posts = [(h, bytes(b)) for path, h, b in recorder.requests if path == "/v1/predict"]
            assert len(posts) == 1
            headers, body = posts[0]
            assert body == codec.write_tensor(x, media, "inputs")  # x, and nothing else
            assert torch.equal(codec.read_tensor(body, media), x)
            assert set(headers) <= {"host", "accept", "accept-encoding", "connection", "user-agent", "content-length", "content-type"}
            theta_bytes = secret.theta.float().numpy().tobytes()
            assert theta_bytes not in body and secret.theta.numpy().tobytes() not in body
            assert images.numpy().tobytes()[:64] not in body
        # a device of another split is refused before any image is sent
        other = Device(split_model(_net(seed=1), deployment["root"] / "other", pool=deployment["pool"]).device)
        recorder.requests.clear()
        with Client(url, other) as client, pytest.raises(KeyMismatchError, match="another network or another split"):
            client.logits(images)
        assert [path for path, _, _ in recorder.requests] == ["/v1/info"]
        with Client(url, deployment["root"] / "deploy" / "device") as client:  # the secret's file, by its stem
            assert client.logits(images).shape == (10, 10)
        with Client(url, 42) as client, pytest.raises(KeyMismatchError, match="device part"):
            client.check_secret()


def test_accuracy_with_a_seed_is_reproducible(deployment: dict) -> None:
    files = deployment["files"]
    images = _images(40, 30)
    server = Server(files.server)
    with torch.no_grad():
        labels = deployment["net"](images.float() / 255).argmax(1)  # b = 0: the labels the net gives without a counterpart
    runs = {s: [protocol.accuracy(Device(files.device, seed=s), server, images, labels, batch_size=b) for b in (16, 40)] for s in (0, 1)}
    assert runs[0][0] == runs[0][1] and runs[1][0] == runs[1][1]  # the same seed: the same number, whatever the batches
    one, two = (protocol.logits(Device(files.device, seed=0), server, images, batch_size=7) for _ in range(2))
    assert torch.equal(one, two)
    fresh = [protocol.logits(Device(files.device), server, images) for _ in range(2)]
    assert not torch.equal(fresh[0], fresh[1])  # unseeded: other counterparts, other logits of this untrained net


def test_served_model_must_be_a_processor(tmp_path: Path, deployment: dict) -> None:
    net = _net()
    models.save(net, tmp_path / "whole")
    with pytest.raises(ModelFormatError, match="serve only its processor"):
        ServedModel.load(tmp_path / "whole")
    with pytest.raises(ModelFormatError, match="device part"):
        ServedModel.load(deployment["files"].device)
    # a whole network dressed up with the processor's card is still refused
    models.save(net, tmp_path / "dressed", extra={"complex": json.loads(deployment["files"].server.with_suffix(".json").read_text())["extra"]["complex"]})
    with pytest.raises(ModelFormatError, match="served as its processor alone"):
        ServedModel.load(tmp_path / "dressed")
    assert kinds.kind("complex").name == "complex"


def test_cli_split_serve_query(deployment: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = _net(in_channels=3)
    models.save(net, tmp_path / "net", input_shape=(3, 32, 32))
    assert main(["split", str(tmp_path / "net"), "-o", str(tmp_path / "d"), "--pool-data", "digits", "--pool-size", "16", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "server:" in out and "device:" in out and "16 counterpart images" in out
    assert safetensors.torch.load_file(tmp_path / "d/device.safetensors")["pool"].shape == (16, 3, 32, 32)
    served = ServedModel.load(tmp_path / "d/server.json")
    with local_server(create_app(served, tokens=None)) as url:
        runs = []
        for _ in range(2):
            assert (
                main(["query", "--server", url, "--secret", str(tmp_path / "d/device.json"), "--data", "digits", "--limit", "30", "--seed", "4", "--json"]) == 0
            )
            captured = capsys.readouterr()
            runs.append((json.loads(captured.out), captured.err))
        assert runs[0] == runs[1] and "accuracy:" in runs[0][1]
        assert len(runs[0][0]) == 30
        # with a pool from another spec, and without a seed
        assert (
            main(
                [
                    "query",
                    "--server",
                    url,
                    "--secret",
                    str(tmp_path / "d/device"),
                    "--data",
                    "digits",
                    "--limit",
                    "5",
                    "--pool",
                    "digits",
                    "--pool-size",
                    "8",
                    "--pool-split",
                    "test",
                ]
            )
            == 0
        )
        assert len(capsys.readouterr().out.strip().splitlines()) == 5
        assert (
            main(["query", "--server", url, "--secret", str(tmp_path / "d/device.json"), "--data", "digits", "--limit", "5", "--pool", "digits:size=16"]) == 2
        )
        assert "16×16" in capsys.readouterr().err


def test_a_device_part_is_refused_by_a_keyed_server_and_a_key_by_a_complex_one(deployment: dict) -> None:
    from veilnet.keyed import generate_key, public_params, transform_model

    key = generate_key("block", 4, 3, 32, seed=0)
    plain = models.create("convmixer", dim=8, depth=1, kernel_size=3, patch_size=4)
    keyed = ServedModel.from_model(transform_model(plain, key), {"architecture": "convmixer", "extra": {"keyed": public_params(key)}})
    with local_server(create_app(keyed, tokens=None)) as url, Client(url, Device(deployment["files"].device)) as client:
        with pytest.raises(KeyMismatchError, match="served model is keyed"):
            client.check_secret()
    with local_server(create_app(ServedModel.load(deployment["files"].server), tokens=None)) as url, Client(url, key) as client:
        with pytest.raises(KeyMismatchError, match="not a Key"):
            client.check_secret()
