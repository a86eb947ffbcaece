"""Configuration functions of the Keras backend API (thin wrappers over symk.config)."""

from __future__ import annotations

from symk import config
from symk.errors import ArgumentError

floatx = config.floatx
epsilon = config.epsilon
image_data_format = config.image_data_format


# The setters take Keras's parameter names (``K.set_floatx(floatx='float64')`` works as with
# Keras); symk.config's setters do the checking and, with Keras loaded, update keras.backend.common.


def set_floatx(floatx: str) -> None:
    """Set the default float type: 'float16', 'float32' or 'float64'."""
    config.set_floatx(floatx)


def set_epsilon(e: float) -> None:
    """Set the fuzz factor returned by ``epsilon()``."""
    config.set_epsilon(e)


def set_image_data_format(data_format: str) -> None:
    """Set the image data format: 'channels_last' or 'channels_first'."""
    config.set_image_data_format(data_format)


# Keras 1 names that Keras 2.3.1's keras/backend/common.py keeps (without a deprecation
# warning): 'th' is channels_first, 'tf' channels_last.


def image_dim_ordering() -> str:
    """Legacy getter of ``image_data_format``: 'th' for channels_first, else 'tf'."""
    return "th" if image_data_format() == "channels_first" else "tf"


def set_image_dim_ordering(dim_ordering: str) -> None:
    """Legacy setter of ``image_data_format``: 'th' sets channels_first, 'tf' channels_last;
    any other value is a ValueError (``ArgumentError``), as in Keras."""
    if dim_ordering not in ("tf", "th"):
        raise ArgumentError(f"K.set_image_dim_ordering: Unknown dim_ordering: {dim_ordering!r}; "
                            "expected 'tf' or 'th'")
    set_image_data_format("channels_first" if dim_ordering == "th" else "channels_last")


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
