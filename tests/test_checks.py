"""veilnet.checks: what an integer or a number option accepts, and errors that name the option."""

import math

import pytest

from veilnet.checks import check_int, check_number, is_int, is_int_list, is_number
from veilnet.errors import ConfigError, KeyFileError


def test_a_bool_is_neither_an_integer_nor_a_number() -> None:
    assert is_int(3) and is_int(-1) and is_int(0)
    assert not is_int(True) and not is_int(False) and not is_int(3.0) and not is_int("3") and not is_int(None)
    assert is_number(3) and is_number(2.5) and is_number(math.nan) and is_number(-math.inf)
    assert not is_number(True) and not is_number("2.5") and not is_number(None)


def test_int_lists_refuse_bools_floats_and_values_under_the_minimum() -> None:
    assert is_int_list([]) and is_int_list([0, 3, -2]) and is_int_list([0, 1], minimum=0)
    assert not is_int_list((1, 2)) and not is_int_list([1, True]) and not is_int_list([1, 2.0]) and not is_int_list("12")
    assert not is_int_list([3, 0], minimum=1) and not is_int_list([-1], minimum=0)


def test_check_int_returns_the_value_within_its_bound() -> None:
    assert check_int("epochs", 1, minimum=1) == 1
    assert check_int("seed", 0, minimum=0) == 0
    assert check_int("offset", -5) == -5


@pytest.mark.parametrize(
    ("value", "minimum", "message"),
    [
        (True, None, "epochs must be an integer, got True"),
        (2.0, None, "epochs must be an integer, got 2.0"),
        ("3", 1, "epochs must be an integer ≥ 1, got '3'"),
        (0, 1, "epochs must be an integer ≥ 1, got 0"),
        (1, 2, "epochs must be an integer ≥ 2, got 1"),
    ],
)
def test_check_int_refuses_naming_the_option(value, minimum, message) -> None:
    with pytest.raises(ConfigError) as info:
        check_int("epochs", value, minimum=minimum)
    assert str(info.value) == message


def test_check_int_raises_the_error_type_asked_for() -> None:
    with pytest.raises(KeyFileError, match="block_size must be an integer ≥ 1, got False"):
        check_int("block_size", False, minimum=1, error=KeyFileError)


def test_check_number_takes_ints_and_floats_inside_the_interval() -> None:
    assert check_number("lr", 0.1, low=0, low_open=True) == 0.1
    assert check_number("dropout", 0, low=0, high=1, high_open=True) == 0
    assert check_number("momentum", 1, low=0, high=1) == 1


@pytest.mark.parametrize(
    ("value", "bounds", "message"),
    [
        (math.nan, {}, "lr must be a finite number in [-inf, inf], got nan"),
        (math.inf, {"low": 0}, "lr must be a finite number in [0, inf], got inf"),
        (-math.inf, {}, "lr must be a finite number in [-inf, inf], got -inf"),
        (True, {}, "lr must be a finite number in [-inf, inf], got True"),
        ("0.1", {}, "lr must be a finite number in [-inf, inf], got '0.1'"),
        (0, {"low": 0, "low_open": True}, "lr must be a finite number in (0, inf], got 0"),
        (1.0, {"low": 0, "high": 1, "high_open": True}, "lr must be a finite number in [0, 1), got 1.0"),
        (-0.5, {"low": 0, "high": 1}, "lr must be a finite number in [0, 1], got -0.5"),
    ],
)
def test_check_number_refuses_non_finite_bools_and_values_outside(value, bounds, message) -> None:
    with pytest.raises(ConfigError) as info:
        check_number("lr", value, **bounds)
    assert str(info.value) == message
