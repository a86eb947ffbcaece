"""Keras backend functions that the convolution/RNN/CTC issue implements.  They exist so that
Keras can import symk as a backend; each raises a clear error naming itself until then."""

from __future__ import annotations

_PENDING = (
    "rnn", "conv1d", "separable_conv1d", "conv2d", "separable_conv2d", "conv2d_transpose",
    "depthwise_conv2d", "conv3d", "conv3d_transpose", "pool2d", "pool3d", "resize_images",
    "resize_volumes", "ctc_label_dense_to_sparse", "ctc_batch_cost", "ctc_decode", "map_fn",
    "foldl", "foldr", "local_conv1d", "local_conv2d",
)


def _pending(name: str):
    def f(*args, **kwargs):
        raise NotImplementedError(f"K.{name} is not implemented in symk yet (it comes with the "
                                  "convolution/RNN/CTC issue)")
    f.__name__ = name
    f.__qualname__ = name
    return f


for _name in _PENDING:
    globals()[_name] = _pending(_name)

__all__ = list(_PENDING)
