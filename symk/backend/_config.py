"""Configuration functions of the Keras backend API (thin wrappers over symk.config)."""

from __future__ import annotations

from symk import config
from symk.errors import ArgumentError

floatx = config.floatx
set_floatx = config.set_floatx
epsilon = config.epsilon
set_epsilon = config.set_epsilon
image_data_format = config.image_data_format
set_image_data_format = config.set_image_data_format


def backend() -> str:
    return "symk"


def normalize_data_format(value: str | None) -> str:
    if value is None:
        value = image_data_format()
    data_format = str(value).lower()
    if data_format not in ("channels_first", "channels_last"):
        raise ArgumentError('The `data_format` argument must be one of "channels_first", '
                            f'"channels_last". Received: {value}')
    return data_format


def symbolic(func):
    """Keras 2.3 decorator (a no-op: symk is always symbolic)."""
    return func


def eager(func):
    """Keras 2.3 decorator (a no-op: symk is always symbolic)."""
    return func
