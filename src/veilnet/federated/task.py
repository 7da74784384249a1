"""The machine learning of a federation, without Flower: what a client and the server compute.

Nagamori & Kiya, "Combined Use of Federated Learning and Image Encryption for Privacy-Preserving
Image Classification with Vision Transformer" (the federated ViT paper), Sec. 4.1: K clients each
hold one part of the training set and train locally; FedAvg (McMahan et al., 2017) integrates
the models every round,

    w_{t+1} = Σ_k (n_k / n) · w_{t+1}^k,    n = Σ_k n_k,                         (FedAvg)

with n_k the number of training images of client k; after the last round each client transforms
its copy of the integrated model with its own key (Ê = Ea·E, Eq. 3; Ê_pos = Eb·E_pos, Eq. 8)
and encrypts its own test images (Eq. 9-13), so the transformed model on encrypted images
computes the plain model's logits on plain images (Eq. 14).

The Flower apps (:mod:`veilnet.federated.client_app`, :mod:`veilnet.federated.server_app`) are thin: they move weights and the run's
:class:`FederatedConfig` (sent to the clients as JSON in every message) and call this module.
A client holds either one partition of the server's data set, cut the same way in every
process from the spec and the seed (:func:`client_data`), or a data set of its own
(:func:`own_data`), whose images and classes must fit the server's model (the config names its
input shape and classes, so such a client never needs the server's data).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from veilnet import data, metrics, models
from veilnet.checks import is_int, is_number
from veilnet.data import ImageSplit
from veilnet.errors import ConfigError, ModelFormatError
from veilnet.report import Result
from veilnet.training.classifier import TrainConfig, train_epochs

__all__ = [
    "PAPER_TRAIN",
    "FederatedConfig",
    "KeyedReport",
    "SECAGG_MODULUS",
    "STRATEGIES",
    "apply_update",
    "build_model",
    "central_test",
    "check_secagg_range",
    "client_data",
    "cross_key_accuracy",
    "described",
    "evaluate",
    "get_weights",
    "is_finite",
    "key_scheme",
    "keyed_report",
    "keyed_step",
    "local_train",
    "model_update",
    "own_data",
    "secagg_scales",
    "set_weights",
    "train_baseline",
]

#: The paper's local training (Sec. 4.1): SGD, learning rate 1e-3, momentum 0.9, batch size 8,
#: cross-entropy, integration every epoch. No weight decay, schedule or augmentation is named.
PAPER_TRAIN = TrainConfig(optimizer="sgd", lr=1e-3, momentum=0.9, batch_size=8, weight_decay=0.0, schedule="constant", augment=False, epochs=1)

#: Model name -> the key scheme its patch embedding takes (veilnet.keyed): the ViT scheme (Ea
#: and the block permutation Eb, federated ViT paper Sec. 3.2) or the block scheme (ConvMixer).
_SCHEMES = {"vit": "vit", "convmixer": "block"}

#: The server's strategies (Flower's :mod:`flwr.serverapp.strategy` classes of the same names)
#: and the settings each takes (its constructor's keyword; Flower's default where not given):
#: FedAvg (McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized
#: Data", 2017); FedAvgM, server SGD with momentum on the pseudo-gradient w_t − w̄ (Hsu et al.,
#: "Measuring the Effects of Non-Identical Data Distribution for Federated Visual
#: Classification", 2019, Sec. 3); FedAdam, server Adam on it (Reddi et al., "Adaptive
#: Federated Optimization", ICLR 2021, Algorithm 2); FedProx, FedAvg whose clients add the
#: proximal term μ/2·‖w − w_t‖² to their loss (Li et al., "Federated Optimization in
#: Heterogeneous Networks", MLSys 2020, Sec. 3).
STRATEGIES: dict[str, tuple[str, ...]] = {
    "fedavg": (),
    "fedavgm": ("server_learning_rate", "server_momentum"),
    "fedadam": ("eta", "beta_1", "beta_2", "tau"),
    "fedprox": ("proximal_mu",),
}
#: Each strategy setting's range: (low, high, low included).
_STRATEGY_RANGES = {
    "server_learning_rate": (0.0, math.inf, False),
    "server_momentum": (0.0, 1.0, True),
    "eta": (0.0, math.inf, False),
    "beta_1": (0.0, 1.0, True),
    "beta_2": (0.0, 1.0, True),
    "tau": (0.0, math.inf, False),
    "proximal_mu": (0.0, math.inf, True),
}

#: SecAgg+'s masks are drawn modulo 2^32 (Flower's default modulus): the sum of the
#: N clients' quantised updates, each in [0, T], must stay below it (N·T < 2^32).
SECAGG_MODULUS = 2**32


@dataclass(frozen=True)
class FederatedConfig(Result):
    """One federation: model, data and its partition, rounds, local training, FedAvg's clients.

    ``partition`` is ``iid`` or ``dirichlet`` (label skew with concentration ``alpha``);
    ``local_epochs`` epochs of ``train`` per round on each client; ``min_clients`` (default all)
    is the fewest clients a round needs (a round goes on when others fail); ``subset`` and
    ``test_subset`` take that many images per class of the train and test splits first.

    ``secagg`` runs the rounds with SecAgg+ (Bell et al., "Secure Single-Server Aggregation with
    (Poly)Logarithmic Overhead", CCS 2020; after Bonawitz et al., "Practical Secure Aggregation
    for Privacy-Preserving Machine Learning", CCS 2017): each client's update, scaled by
    n_k / max_j n_j, is clipped to ±``secagg_clip``, quantised to ``secagg_quantization`` levels
    and masked, so the server recovers only the weighted sum (bound in :func:`model_update`).

    ``secagg_stats_clip`` is the clipping range of the running statistics' updates
    (:func:`secagg_scales`): the default 1024 = 2^10 lets a BatchNorm running variance move by
    up to 1024 per round, at a quantisation step of 2·1024 / 2^22 = 2^-11 (the weights' is
    2·8 / 2^22 = 2^-18).

    ``strategy`` is the server's (:data:`STRATEGIES`; ``strategy_args``: its settings, Flower's
    defaults for the others); ``lr_schedule`` sets the clients' learning rate per round
    (:meth:`round_lr`).

    ``input_shape`` (C, H, W) and ``num_classes`` are the model's, from the server's data
    (:func:`described`; None: read them from ``data``): a client with its own data builds the
    model from them and checks that its images fit.
    """

    model: str
    data: str = "digits"
    clients: int = 10
    rounds: int = 10
    local_epochs: int = 1
    model_args: dict[str, Any] = field(default_factory=dict)
    partition: str = "iid"
    alpha: float = 0.5
    train: TrainConfig = PAPER_TRAIN
    seed: int = 0
    min_clients: int | None = None
    subset: int | None = None
    test_subset: int | None = None
    secagg: bool = False
    secagg_clip: float = 8.0
    secagg_stats_clip: float = 1024.0
    secagg_quantization: int = 2**22
    strategy: str = "fedavg"
    strategy_args: dict[str, float] = field(default_factory=dict)
    lr_schedule: str = "constant"
    input_shape: tuple[int, int, int] | None = None
    num_classes: int | None = None

    def __post_init__(self) -> None:
        if self.input_shape is not None:  # a list, from JSON
            object.__setattr__(self, "input_shape", tuple(self.input_shape))
        for name in ("clients", "rounds", "local_epochs"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ConfigError(f"{name.replace('_', ' ')} must be a positive integer, got {value!r}")
        if self.partition not in ("iid", "dirichlet"):
            raise ConfigError(f"partition must be iid or dirichlet, got {self.partition!r}")
        if not self.alpha > 0:
            raise ConfigError(f"the Dirichlet concentration alpha must be positive, got {self.alpha}")
        if self.min_clients is not None and not (is_int(self.min_clients) and 1 <= self.min_clients <= self.clients):
            raise ConfigError(f"min clients must be between 1 and the {self.clients} clients, got {self.min_clients}")
        if isinstance(self.train, dict):  # from JSON
            object.__setattr__(self, "train", TrainConfig.from_dict(self.train))
        for name in ("secagg_clip", "secagg_stats_clip"):
            value = getattr(self, name)
            if not (is_number(value) and 0 < value < math.inf):
                raise ConfigError(f"the SecAgg+ clipping range{' of the statistics' if 'stats' in name else ''} must be a positive number, got {value!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        for name, value in self.strategy_args.items():
            if name not in STRATEGIES[self.strategy]:
                takes = ", ".join(STRATEGIES[self.strategy]) or "no setting"
                raise ConfigError(f"strategy {self.strategy} takes {takes}, not {name}")
            low, high, closed = _STRATEGY_RANGES[name]
            if not (is_number(value) and (low <= value if closed else low < value) and value < high):
                raise ConfigError(f"{name} must be {'at least' if closed else 'above'} {low:g} and below {high:g}, got {value!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"the learning-rate schedule across rounds must be constant or cosine, got {self.lr_schedule!r}")
        q = self.secagg_quantization
        if not is_int(q) or q < 2 or (self.secagg and self.clients * q >= SECAGG_MODULUS):
            raise ConfigError(f"the SecAgg+ quantisation range must be an integer from 2 to below 2^32 / clients, got {q!r}")
        if self.secagg and self.clients < 2:
            raise ConfigError(f"secure aggregation needs at least 2 clients, got {self.clients}")
        if self.secagg and self.needed < self.secagg_threshold:
            raise ConfigError(
                f"with secure aggregation a round needs a majority of the clients: min clients "
                f"must be at least {self.secagg_threshold} of {self.clients}, got {self.needed}"
            )

    @property
    def needed(self) -> int:
        """The fewest clients a round waits for."""
        return self.clients if self.min_clients is None else self.min_clients

    @property
    def secagg_threshold(self) -> int:
        """SecAgg+'s reconstruction threshold t = ⌊N/2⌋ + 1 (at least 2): the server needs
        the secret shares of t clients to remove a client's masks, so a round survives N − t
        dropouts, and fewer than t clients colluding with the server cannot remove them."""
        return max(2, self.clients // 2 + 1)

    def round_lr(self, server_round: int) -> float:
        """The clients' learning rate in round ``server_round`` (1 to ``rounds``): ``train.lr``
        throughout (``constant``), or cosine-annealed across the rounds (``cosine``,
        Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017,
        Eq. 5 without restarts), lr·(1 + cos(π·(r − 1)/R))/2: the full rate in round 1, lr/2 at
        the middle, lr·(1 + cos(π·(R − 1)/R))/2 in the last round."""
        if self.lr_schedule == "constant":
            return self.train.lr
        return self.train.lr * (1 + math.cos(math.pi * (server_round - 1) / self.rounds)) / 2

    @property
    def total_epochs(self) -> int:
        """Epochs each image is seen in the federation, the centralised baseline's budget."""
        return self.rounds * self.local_epochs

    def dumps(self) -> str:
        """The canonical JSON the server sends to its clients in every message."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def loads(cls, text: str) -> FederatedConfig:
        return cls.from_dict(json.loads(text))


def key_scheme(model_name: str) -> str:
    """The key scheme for ``model_name``; ConfigError for a model no key scheme transforms."""
    if model_name not in _SCHEMES:
        raise ConfigError(f"model {model_name!r} cannot take a key; the federation's keyed step needs {' or '.join(_SCHEMES)}")
    return _SCHEMES[model_name]


@functools.lru_cache(maxsize=4)
def _splits(spec: str, subset: int | None, test_subset: int | None, seed: int) -> tuple[ImageSplit, ImageSplit]:
    train, test = data.load(spec, "train"), data.load(spec, "test")
    if subset:
        train = data.subset(train, subset, seed=seed)
    if test_subset:
        test = data.subset(test, test_subset, seed=seed)
    return train, test


def central_test(config: FederatedConfig) -> ImageSplit:
    """The whole test split (after ``test_subset``): the server's central evaluation set."""
    return _splits(config.data, config.subset, config.test_subset, config.seed)[1]


def client_data(config: FederatedConfig, partition: int) -> tuple[ImageSplit, ImageSplit]:
    """Client ``partition``'s training and test images.

    Training images: IID (:func:`veilnet.data.partition_iid`) or Dirichlet(α) label skew
    (:func:`veilnet.data.partition_dirichlet`); test images: always IID (the paper's 1,000 test
    images per client). Both seeded by ``config.seed``, so every process cuts the same parts.
    """
    if not 0 <= partition < config.clients:
        raise ConfigError(f"partition {partition} is not one of the {config.clients} clients' (0..{config.clients - 1})")
    return _parts(config.data, config.subset, config.test_subset, config.seed, config.clients, config.partition, config.alpha)[partition]


@functools.lru_cache(maxsize=4)
def _parts(spec: str, subset: int | None, test_subset: int | None, seed: int, k: int, partition: str, alpha: float) -> list[tuple[ImageSplit, ImageSplit]]:
    train, test = _splits(spec, subset, test_subset, seed)
    train_parts = data.partition_iid(train, k, seed=seed) if partition == "iid" else data.partition_dirichlet(train, k, alpha, seed=seed)
    return list(zip(train_parts, data.partition_iid(test, k, seed=seed + 1), strict=True))


def _input(config: FederatedConfig) -> tuple[tuple[int, int, int], int]:
    """The model's input shape (C, H, W) and classes: the config's, else its data's."""
    if config.input_shape is not None and config.num_classes is not None:
        return config.input_shape, config.num_classes
    test = central_test(config)
    return test.image_shape, test.num_classes


def described(config: FederatedConfig) -> FederatedConfig:
    """``config`` with the input shape and classes of its data filled in (what the server sends
    its clients: one with its own data builds the model without the server's data)."""
    shape, classes = _input(config)
    return dataclasses.replace(config, input_shape=shape, num_classes=classes)


def build_model(config: FederatedConfig) -> nn.Module:
    """The initial global model: the zoo model for the classes and channels of
    :func:`described`, seeded by ``config.seed`` and checked to take its images (ShapeError
    otherwise)."""
    shape, classes = _input(config)
    kwargs = {"num_classes": classes, "in_channels": shape[0], **config.model_args}
    torch.manual_seed(config.seed)
    model = models.create(config.model, **kwargs)
    models.check_input(model, shape, data=config.data)
    return model


def own_data(config: FederatedConfig, spec: str) -> tuple[ImageSplit, ImageSplit]:
    """The training and test split of a client's own data set ``spec``, checked to fit the
    server's model (:func:`described`): the same image shape and number of classes, else a
    ConfigError that says both; a split without images is one too."""
    shape, classes = _input(config)
    train, test = data.load(spec, "train"), data.load(spec, "test")
    want = f"{'×'.join(map(str, shape))} images, {classes} classes"
    for name, split in (("training", train), ("test", test)):
        if len(split) == 0:
            raise ConfigError(f"this client's data {spec} has no {name} images")
        got = f"{'×'.join(map(str, split.image_shape))} images, {split.num_classes} classes"
        if got != want:
            raise ConfigError(f"this client's data {spec} ({got}) does not fit the server's model {config.model} ({want})")
    return train, test


def get_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state as CPU tensors (what a client sends; what FedAvg averages)."""
    return {name: value.detach().cpu() for name, value in model.state_dict().items()}


def set_weights(model: nn.Module, state: dict[str, Any]) -> nn.Module:
    """Load ``state`` (tensors or arrays; an averaged integer buffer is cast back) strictly."""
    own = model.state_dict()
    if set(state) != set(own):
        raise ModelFormatError(f"the weights received do not fit the model: {len(set(own) ^ set(state))} names differ")
    model.load_state_dict({name: torch.as_tensor(state[name]).to(own[name].dtype) for name in own}, strict=True)
    return model


def local_train(
    config: FederatedConfig, model: nn.Module, split: ImageSplit, *, server_round: int, partition: int, proximal_mu: float = 0.0, device: str = "cpu"
) -> dict[str, float]:
    """``config.local_epochs`` epochs of ``config.train`` on the client's ``split``, in place,
    at the round's learning rate (:meth:`FederatedConfig.round_lr`).

    A fresh optimiser per round (the paper's clients keep no state between integrations) and a
    shuffling seed per round and client. With ``proximal_mu`` μ > 0 (FedProx: Li et al.,
    "Federated Optimization in Heterogeneous Networks", MLSys 2020, Sec. 3, Eq. 2) every step
    minimises the loss plus μ/2·‖w − w_t‖² over the trained parameters, w_t the global model
    this round started from. Returns ``train_loss`` (last epoch, with the proximal term),
    ``num-examples`` (n_k, FedAvg's weight), ``train_seconds`` and torch's ``threads``. A
    client with no images (possible with a small Dirichlet α) trains nothing and weighs 0.
    """
    start = time.perf_counter()
    if len(split) == 0:
        return {"train_loss": float("nan"), "num-examples": 0, "train_seconds": 0.0, "threads": torch.get_num_threads()}
    train = dataclasses.replace(config.train, seed=config.seed * 7919 + 1000 * server_round + partition, lr=config.round_lr(server_round))
    penalty = _proximal_term(model, proximal_mu) if proximal_mu else None
    history = train_epochs(model, split, train, epochs=config.local_epochs, device=device, penalty=penalty)
    return {
        "train_loss": float(history[-1]["train_loss"]),
        "num-examples": len(split),
        "train_seconds": time.perf_counter() - start,
        "threads": torch.get_num_threads(),
    }


def _proximal_term(model: nn.Module, mu: float) -> Any:
    """FedProx's μ/2·‖w − w_t‖² over ``model``'s trained parameters, w_t their values now."""
    start = [(p, p.detach().clone()) for p in model.parameters() if p.requires_grad]
    return lambda _: mu / 2 * sum(((p - p0) ** 2).sum() for p, p0 in start)


def secagg_scales(config: FederatedConfig, model: nn.Module) -> dict[str, float]:
    """What SecAgg+ multiplies each floating-point tensor's update by before it is quantised, in
    state order: 1 for a trained parameter, c / c_s for a running statistic (a floating-point
    buffer: BatchNorm's running mean and variance), c = ``secagg_clip``, c_s =
    ``secagg_stats_clip``.

    Running statistics are not gradients: a BatchNorm running variance follows the scale of
    the activations and can move by tens in one round (an exponential average of batch
    variances), where the weights move by a fraction of one. FedAvg averages them like the
    weights (McMahan et al., 2017, average the whole model state), so they travel the same way,
    as the update Δ_k = s_k − s_t, only scaled into the one clipping range Flower's SecAgg+
    quantises with: a statistic's update may reach ±c_s, and its quantisation step is
    2·c_s / T instead of 2·c / T. The server divides the aggregate by the same factor
    (:func:`apply_update`), so the statistics come out as FedAvg's weighted mean, within
    N·(2·c_s + max_k |Δ_k|) / Σ_k q_k (:func:`model_update`'s bound with c_s for c).
    """
    buffers = {name for name, _ in model.named_buffers()}
    ratio = config.secagg_clip / config.secagg_stats_clip
    return {name: ratio if name in buffers else 1.0 for name, value in model.state_dict().items() if value.is_floating_point()}


def model_update(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], scales: dict[str, float]) -> list[np.ndarray]:
    """The update s·Δ_k = s·(w_k − w_t) of every floating-point tensor (``scales``:
    :func:`secagg_scales`, in state order): what a client sends through SecAgg+.

    Flower's SecAgg+ workflow returns Σ_k q_k·Δ̃_k / Σ_k q_k with q_k = round(n_k·T / W)
    (T = quantisation levels, W = max_k n_k, which the server learns from the clients when
    they connect and sends them) and each coordinate of
    (q_k / T)·s·Δ_k clipped to ±c and stochastically rounded to a grid of step 2c / T. Without
    clipping (:func:`check_secagg_range`) it differs from FedAvg's Σ_k (n_k / n)·Δ_k by at most

        N·(2c/s + max_k |Δ_k|) / Σ_k q_k                                 per coordinate,

    N·2c/s / Σ q from the N roundings and N·max|Δ| / Σ q from rounding the weights (c/s is c
    for a weight and c_s for a running statistic). Integer
    tensors (BatchNorm's batch counters, unused with a momentum) are not sent: they count a
    client's batches, so they would give its n_k away, and they keep the global value.
    """
    return [((after[name].double() - before[name].double()) * scale).numpy().astype(np.float32) for name, scale in scales.items()]


def apply_update(state: dict[str, torch.Tensor], update: list[np.ndarray], scales: dict[str, float]) -> dict[str, torch.Tensor]:
    """w_{t+1} = w_t + Δ̄ / s for the floating-point tensors (the order and scales of
    :func:`model_update`); the integer tensors keep ``state``'s values."""
    if len(scales) != len(update):
        raise ModelFormatError(f"the aggregated update has {len(update)} tensors, the model {len(scales)} floating-point ones")
    new = dict(state)
    for (name, scale), delta in zip(scales.items(), update, strict=True):
        new[name] = (state[name].double() + torch.from_numpy(np.asarray(delta, dtype=np.float64)) / scale).to(state[name].dtype)
    return new


def check_secagg_range(config: FederatedConfig, model: nn.Module, update: list[np.ndarray], n_k: int, max_weight: int) -> None:
    """ConfigError when SecAgg+ would clip this client's ``update`` of ``model``'s state: a
    coordinate of (n_k / W)·s·Δ_k beyond ±``secagg_clip``, W = ``max_weight`` = max_k n_k
    (every client scales its update by n_k / W ≤ 1, so no weight overflows and the largest
    client keeps the full clipping range; s: :func:`secagg_scales`). Refusing beats a silently
    wrong aggregate; the message says which option to raise (``--secagg-stats-clip`` for a
    running statistic) and gives no value of the update."""
    weight, buffers = n_k / max(1, max_weight), {name for name, _ in model.named_buffers()}
    for name, u in zip(secagg_scales(config, model), update, strict=True):
        if u.size and float(np.abs(u).max()) * weight > config.secagg_clip:
            if name in buffers:
                raise ConfigError(
                    f"this client's running statistics exceed the SecAgg+ clipping range ±{config.secagg_stats_clip:g} of the statistics "
                    "(after scaling by n_k / max n_k); rerun with a larger --secagg-stats-clip"
                )
            raise ConfigError(
                f"this client's update exceeds the SecAgg+ clipping range ±{config.secagg_clip:g} "
                "(after scaling by n_k / max n_k); rerun with a larger --secagg-clip"
            )


def evaluate(model: nn.Module, split: ImageSplit, *, device: str = "cpu") -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``split`` (NaN for an empty split)."""
    if len(split) == 0:
        return {"accuracy": float("nan"), "loss": float("nan"), "num-examples": 0}
    logits = metrics.predict(model, split.images, device=device)
    loss = torch.nn.functional.cross_entropy(logits, split.labels).item()
    return {"accuracy": metrics.accuracy(logits, split.labels), "loss": loss, "num-examples": len(split)}


@dataclass(frozen=True)
class KeyedReport(Result):
    """One client's keyed step (federated ViT paper, Table 1 per client): the fingerprint of its
    key (never the key), its plain and keyed accuracies on its own test images and the largest
    logit difference relative to the largest logit (Eq. 14 says 0 up to rounding)."""

    partition: int
    fingerprint: str
    n_images: int
    plain_accuracy: float
    keyed_accuracy: float
    max_relative_logit_difference: float
    labels_identical: bool


def keyed_report(
    config: FederatedConfig, model: nn.Module, split: ImageSplit, partition: int, *, device: str = "cpu"
) -> tuple[KeyedReport, nn.Module, torch.Tensor]:
    """Client ``partition``'s keyed step on the global ``model``: a fresh key from the OS CSPRNG
    (:func:`_fresh_key`), the model transformed with it (:func:`veilnet.keyed.transform_model`),
    its test images encrypted with it (:func:`veilnet.keyed.encrypt_images`), both accuracies
    measured (:func:`veilnet.keyed.evaluate`). Returns the report, the transformed model and the
    encrypted images; the key itself is dropped. The two tensors are the client's own (with the
    plain integrated model, the transformed one gives the key away): :func:`keyed_step` keeps
    them on the client.
    """
    from veilnet import keyed

    key = _fresh_key(config, model, split)
    result = keyed.evaluate(model, key, split.images, split.labels, random_keys=0, device=device)
    report = KeyedReport(
        partition=partition,
        fingerprint=key.fingerprint,
        n_images=len(split),
        plain_accuracy=result.plain_model_plain_images,
        keyed_accuracy=result.transformed_model_encrypted_images,
        max_relative_logit_difference=result.max_relative_logit_difference,
        labels_identical=result.labels_identical,
    )
    return report, keyed.transform_model(model, key), keyed.encrypt_images(split.images, key)


def keyed_step(config: FederatedConfig, model: nn.Module, split: ImageSplit, partition: int, *, device: str = "cpu") -> tuple[KeyedReport, list[float]]:
    """What client ``partition`` measures after the last round and may tell the server: its
    :class:`KeyedReport` and its row of the cross-key matrix.

    Federated ViT paper, Sec. 3: each client transforms its own copy of the integrated model with
    its own key and keeps it. The key, the transformed model and the encrypted images stay here:
    the server holds the plain integrated model, so a transformed model would give it the key
    (:mod:`veilnet.keyed.attacks.weight_matching`), and encrypted images of its own central test
    set would too (:mod:`veilnet.keyed.attacks.known_plaintext`).

    Row entry j is the accuracy of this client's encrypted test images on its copy of the model
    transformed with client j's key: its own key for j = ``partition`` (the keyed accuracy), and
    for every other j a fresh key from the OS CSPRNG standing for client j's, which no other
    party may see; the clients' keys are independent draws of the same scheme, so the entry is
    distributed as the one with client j's own model.
    """
    from veilnet import keyed

    report, transformed, encrypted = keyed_report(config, model, split, partition, device=device)
    models_by_client = [transformed if j == partition else keyed.transform_model(model, _fresh_key(config, model, split)) for j in range(config.clients)]
    return report, cross_key_accuracy(models_by_client, [encrypted], [split.labels], device=device)[0]


def _fresh_key(config: FederatedConfig, model: nn.Module, split: ImageSplit) -> Any:
    """A key from the OS CSPRNG (:func:`veilnet.keyed.generate_key`) in the scheme of the model,
    its patch size as the block size, for the client's images."""
    from veilnet import keyed

    c, s, _ = split.image_shape
    return keyed.generate_key(key_scheme(config.model), int(model.patch_size), c, s)


def cross_key_accuracy(transformed: list[nn.Module], encrypted: list[torch.Tensor], labels: list[torch.Tensor], *, device: str = "cpu") -> list[list[float]]:
    """``A[i][j]``: accuracy of transformed model j on encrypted test images i (the diagonal is
    each key's own accuracy when model j and images j share a key; off it the keys differ)."""
    return [[metrics.accuracy(metrics.predict(m, x, device=device), y) for m in transformed] for x, y in zip(encrypted, labels, strict=True)]


def is_finite(state: dict[str, torch.Tensor]) -> bool:
    """Whether every floating-point tensor of ``state`` is finite (a diverged model is not)."""
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def train_baseline(config: FederatedConfig, *, device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """The centralised baseline: the same initial model trained on the union of the clients'
    training images for the same number of epochs (``rounds × local_epochs``) with the same local
    optimiser settings, evaluated on the central test set after every epoch."""
    model = build_model(config)
    train = _splits(config.data, config.subset, config.test_subset, config.seed)[0]
    test = central_test(config)
    start = time.perf_counter()
    history = train_epochs(
        model, train, dataclasses.replace(config.train, seed=config.seed), epochs=config.total_epochs, test_split=test, device=device, progress=progress
    )
    return {
        "epochs": config.total_epochs,
        "accuracy": [float(r["test_accuracy"]) for r in history],
        "train_loss": [float(r["train_loss"]) for r in history],
        "final_accuracy": float(history[-1]["test_accuracy"]),
        "seconds": time.perf_counter() - start,
    }
