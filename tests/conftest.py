"""Shared pytest set-up: every test starts and ends with the default Keras settings."""

from __future__ import annotations

import pytest

from symk import backend as K


@pytest.fixture(autouse=True)
def _restore_keras_settings():
    saved = (K.floatx(), K.epsilon(), K.image_data_format())
    yield
    K.set_floatx(saved[0])
    K.set_epsilon(saved[1])
    K.set_image_data_format(saved[2])
