"""Shared pytest set-up: the kernel cache lives in a fresh temporary directory for the test
session (tests never read or fill the user's ~/.cache/symk), and every test starts and ends with
the default Keras settings."""

from __future__ import annotations

import os
import tempfile

import pytest

if "SYMK_CACHE_DIR" not in os.environ:
    os.environ["SYMK_CACHE_DIR"] = tempfile.mkdtemp(prefix="symk-test-cache-")

from symk import backend as K


@pytest.fixture(autouse=True)
def _restore_keras_settings():
    saved = (K.floatx(), K.epsilon(), K.image_data_format())
    yield
    K.set_floatx(saved[0])
    K.set_epsilon(saved[1])
    K.set_image_data_format(saved[2])


# every kernel the suite lowers goes through the Kernel-IR verifier (production leaves it off)
from symk.codegen import kir_verify  # noqa: E402

kir_verify.ENABLED = True
