"""Issue 23: the core's argparse types (numbers, fractions, seeds), budgets that cannot be meant,
the server address of ``fl client``, and models transformed for encoded inputs found by any
registered serving kind (the CLI rows are in tests/cli_error_rows/)."""

from __future__ import annotations

import argparse
import math

import pytest

from veilnet import plugins
from veilnet.checks import check_budget
from veilnet.cli import finite_float, finite_floats, seed
from veilnet.errors import ConfigError, ModelFormatError
from veilnet.federated.cli import _address


@pytest.mark.parametrize(("text", "value"), [("8/255", 8 / 255), ("0.5", 0.5), ("-2", -2.0), (" 1e-3 ", 1e-3), ("3", 3.0)])
def test_finite_float_takes_numbers_and_fractions(text: str, value: float) -> None:
    assert finite_float(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e999", "8/0", "eight", ""])
def test_finite_float_refuses_what_is_no_finite_number(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="finite number"):
        finite_float(text)


def test_finite_floats_takes_fractions_and_refuses_nan() -> None:
    assert finite_floats("1,8/255, 2") == pytest.approx([1, 8 / 255, 2])
    for text in (",", "1,nan", "1,x"):
        with pytest.raises(argparse.ArgumentTypeError, match="comma-separated numbers"):
            finite_floats(text)


def test_seed_is_an_integer_below_2_to_the_63() -> None:
    assert seed("0") == 0 and seed(str(2**63 - 1)) == 2**63 - 1
    for text in (str(2**63), str(2**64), "-1", "1.5", "nan", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="seed"):
            seed(text)


def test_budgets_that_cannot_be_meant() -> None:
    assert check_budget("eps", 8 / 255, norm="linf") == 8 / 255
    assert check_budget("eps", 1, norm="linf") == 1
    with pytest.raises(ConfigError, match=r"did you mean 8/255\?"):
        check_budget("eps", 8, norm="linf")
    diagonal = math.sqrt(3 * 32 * 32)
    assert check_budget("radius", diagonal, norm="l2", shape=(3, 32, 32)) == diagonal
    with pytest.raises(ConfigError, match="diagonal"):
        check_budget("radius", 56, norm="l2", shape=(3, 32, 32))
    for bad in (-1, math.nan, math.inf, True):
        with pytest.raises(ConfigError, match="finite number >= 0"):
            check_budget("eps", bad, norm="linf")


@pytest.mark.parametrize("text", ["127.0.0.1:9091", "[::1]:9091", "example.org:1", "h:65535"])
def test_server_address_is_host_and_port(text: str) -> None:
    assert _address(text) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [("127.0.0.1", "no port"), (":99999", "between 1 and 65535"), ("::::", "port"), ("::1:9091", "brackets"), ("[]:80", "no host"), ("h:", "port")],
)
def test_server_address_refused_in_one_line(text: str, reason: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="HOST:PORT") as info:
        _address(text)
    assert reason in str(info.value) and "\n" not in str(info.value)


def test_any_registered_serving_kind_marks_a_transformed_model() -> None:
    """The core knows a transformed model by the kinds the methods register, imports none of them,
    and names how the kind's method evaluates it (or its commands when it does not say)."""
    from torch import nn

    from veilnet import models

    method = plugins.register(plugins.Method("dummy-refusal", commands={"dummy-refusal": ("nowhere", "help")}, kinds={"dummy-kind": "nowhere"}))
    try:
        assert plugins.serving_kind({"dummy-kind": {}}) == ("dummy-kind", method)
        assert plugins.serving_kind({"keyed": {}})[0] == "keyed"
        assert plugins.serving_kind({"data": "digits"}) is None and plugins.serving_kind(None) is None
        model = nn.Linear(1, 1)
        model.veilnet_card = {"extra": {"dummy-kind": {}}}
        with pytest.raises(ModelFormatError, match="dummy-refusal --help"):
            models.check_plain(model, where="m")
        model.veilnet_card = {"extra": {"keyed": {}}}
        with pytest.raises(ModelFormatError, match="veilnet keyed evaluate"):
            models.check_plain(model, where="m")
        model.veilnet_card = {"extra": {}}
        models.check_plain(model, where="m")
    finally:
        plugins.unregister("dummy-refusal")
