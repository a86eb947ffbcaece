"""pytest plugin that runs Keras 2.3.1's own ``tests/keras/backend/backend_test.py`` on symk.

Loaded with ``-p tests.keras.backend_suite_plugin`` by ``tests/keras/test_backend_suite.py``,
in a subprocess, on the unmodified file of the Keras sdist:

* Keras is loaded on symk exactly as ``tests/keras/conftest.py`` does (its ``_load_keras``),
  and every test starts from the same numpy seed (its ``_seeded`` fixture).
* ``keras.backend.tensorflow_backend`` is aliased to ``symk.backend`` before backend_test.py is
  imported, so that its ``KTF`` is symk and its ``WITH_NP = [KTF, KNP]`` comparisons check
  symk against Keras's numpy reference backend (``keras.backend.numpy_backend``).
* Keras's numpy reference ``in_top_k`` takes the first ``k`` of ``np.argsort(-predictions)``.
  With numpy 1 a row of at most 16 classes was insertion-sorted (stable), so a target tied
  with other classes came first among them; numpy 2's SIMD argsort orders ties arbitrarily and
  that reference then disagrees with TensorFlow (and with itself from run to run).  It is run
  with a stable argsort, which restores the numpy 1 result.
* Theano and CNTK are not installed.  Four tests of the file use Keras's Theano backend
  (``KTH``) by name whatever the backend under test: ``test_gradient`` and ``test_function``
  compare it with ``KTF``; they run with ``KTH`` bound to symk as well (so they check symk's
  gradients, ``stop_gradient`` and function updates, but not against a second backend).
  ``test_print_tensor`` checks Theano's print format (symk prints like TensorFlow) and
  ``test_resize_images_bilinear`` expects Theano's ``NotImplementedError`` for a factor of 4
  (symk, like TensorFlow, resizes by any factor): both are skipped.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.keras.conftest import _load_keras, _seeded  # noqa: F401  (_seeded: autouse fixture)

_reason = _load_keras()
if _reason is not None:
    raise ImportError(f"cannot load Keras on symk: {_reason}")

import keras.backend  # noqa: E402
from keras.backend import numpy_backend  # noqa: E402

import symk.backend  # noqa: E402

sys.modules["keras.backend.tensorflow_backend"] = symk.backend
keras.backend.tensorflow_backend = symk.backend


def _in_top_k(predictions, targets, k):
    """Keras's numpy reference ``in_top_k`` with a stable argsort (numpy 1's result)."""
    top_k = np.argsort(-predictions, kind="stable")[:, :k]
    return np.any(targets.reshape(-1, 1) == top_k, axis=-1)


numpy_backend.in_top_k = _in_top_k

#: tests that name Theano's backend (KTH) and run with it bound to symk
THEANO_AS_SYMK = ("test_gradient", "test_function")
#: tests that check a behaviour of Theano's backend that symk does not share (as TensorFlow)
THEANO_ONLY = {
    "test_print_tensor": "checks Theano's print_tensor format ('msg [[1.]]'); symk prints "
                         "like TensorFlow ('msg[[1.]]') and Theano is not installed",
    "test_resize_images_bilinear": "compares TensorFlow with Theano and expects Theano's "
                                   "NotImplementedError for a factor of 4 (symk resizes by "
                                   "any factor, like TensorFlow); Theano is not installed",
}


def _test_name(item: pytest.Item) -> str:
    return getattr(item, "originalname", None) or item.name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:  # an optional dependency: these run where Theano is installed
        reason = THEANO_ONLY.get(_test_name(item))
        if reason is not None:
            item.add_marker(pytest.mark.skipif(getattr(item.module, "KTH", None) is None,
                                               reason=reason))


@pytest.fixture(autouse=True)
def _theano_as_symk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    module = getattr(request, "module", None)
    if _test_name(request.node) in THEANO_AS_SYMK and getattr(module, "KTH", 1) is None:
        monkeypatch.setattr(module, "KTH", symk.backend)
