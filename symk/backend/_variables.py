"""Creating and inspecting tensors: placeholders, variables, constants, their static info,
values, uids, name scopes, the learning phase and random tensors."""

from __future__ import annotations

import builtins
import contextlib
import threading
from collections import defaultdict
from typing import Any

import numpy as np

from symk import config
from symk.backend._core import api, as_count, as_dims, as_real, is_sym, keras_shaped, shape_spec
from symk.errors import ArgumentError, ShapeError
from symk.graph import build as gb
from symk.graph.node import ConstValue, apply, fresh_uid
from symk.graph.tensor import Tensor, Variable, to_node
from symk.graph.types import as_dtype, shape_str

py_any = builtins.any

# ---------------------------------------------------------------- names and uids

_scope = threading.local()
_uids: dict[str, int] = defaultdict(int)
_var_names: dict[str, int] = defaultdict(int)


def _scoped(name: str) -> str:
    prefix = "/".join(getattr(_scope, "stack", []))
    return f"{prefix}/{name}" if prefix else name


@contextlib.contextmanager
def name_scope(name: str):
    """Prefix the names of variables created inside with ``name/``."""
    stack = getattr(_scope, "stack", None)
    if stack is None:
        stack = _scope.stack = []
    stack.append(str(name))
    try:
        yield name
    finally:
        stack.pop()


def get_uid(prefix: str = "") -> int:
    _uids[prefix] += 1
    return _uids[prefix]


def reset_uids() -> None:
    _uids.clear()


def clear_session() -> None:
    """Reset uids and the learning phase (graphs are garbage collected with their handles)."""
    global _learning_phase_value, _learning_phase_ph
    reset_uids()
    _var_names.clear()
    _learning_phase_value = None
    _learning_phase_ph = None


def _unique_var_name(name: str) -> str:
    base = _scoped(name)
    k = _var_names[base]
    _var_names[base] += 1
    return base if k == 0 else f"{base}_{k}"


@contextlib.contextmanager
def control_dependencies(control_inputs: Any):
    """Accepted for Keras compatibility: symk computes every output and update of a call
    before writing any variable, so explicit ordering is never needed."""
    yield


# ---------------------------------------------------------------- creation


@api
def placeholder(shape=None, ndim=None, dtype=None, sparse=False, name=None):
    dtype = as_dtype(dtype or config.floatx())
    if shape is None:
        if ndim is None:
            raise ArgumentError("specify either a shape or ndim")
        shape = (None,) * as_count(ndim, "ndim")
    shape = as_dims(shape, unknown=True)
    if sparse:
        from symk.backend._sparse import sparse_placeholder

        t = sparse_placeholder(shape, dtype, name)
        t._keras_shape = shape
        t._uses_learning_phase = False
        return t
    node = apply("placeholder", [], dtype=dtype, shape=shape, uid=fresh_uid())
    t = Tensor(node, name or "placeholder")
    t._keras_shape = shape
    t._uses_learning_phase = False
    t._symk_placeholder = True
    return t


def is_placeholder(x: Any) -> bool:
    return issubclass(type(x), Tensor) and x.node.op.name == "placeholder"


@api
def variable(value, dtype=None, name=None, constraint=None):
    """A variable holding a copy of ``value``; of a scipy.sparse matrix, a sparse tensor (as
    with Keras's TensorFlow backend)."""
    dtype = as_dtype(dtype or config.floatx())
    if hasattr(value, "tocoo") and hasattr(value, "nnz"):  # scipy.sparse, never imported
        from symk.backend._sparse import sparse_variable

        return sparse_variable(value, dtype, _unique_var_name(name or "variable"))
    if is_sym(value):
        value = eval(value)
    arr = gb.as_array(value, dtype, "value")
    if arr is value:
        arr = arr.copy()
    from symk.runtime.devices import DEVICES, resolve

    move = DEVICES[config.device()].to_device  # (cuda's variables live on the GPU)
    if move is not None:
        arr = resolve(move)(arr)
    v = Variable(arr, _unique_var_name(name or "variable"), constraint)
    return v


def is_variable(x: Any) -> bool:
    # type(x), not isinstance: never touches a foreign object's attributes (never raises)
    return issubclass(type(x), Variable)


@api
@keras_shaped(always=True)
def constant(value, dtype=None, shape=None, name=None):
    dtype = as_dtype(dtype or config.floatx())
    if is_sym(value):
        value = eval(value)
    a = gb.as_array(value, dtype, "value")
    if shape is not None:
        shape = as_dims(shape)
        if a.size != 1 and a.shape != shape and a.size != int(np.prod(shape)):
            raise ShapeError(f"cannot make a constant of shape {shape_str(shape)} from a value "
                             f"of shape {shape_str(a.shape)}")
        a = np.broadcast_to(a, shape) if a.size == 1 or a.shape == shape else a.reshape(shape)
    return Tensor(gb.const(a), name)


def is_tensor(x: Any) -> bool:
    return issubclass(type(x), Tensor)


def is_keras_tensor(x: Any) -> bool:
    if not is_tensor(x):
        raise ArgumentError(f"Unexpectedly found an instance of type `{type(x)}`. "
                            "Expected a symbolic tensor instance.")
    return hasattr(x, "_keras_history")


def is_sparse(tensor: Any) -> bool:
    from symk.backend._sparse import is_sparse as _is_sparse

    return _is_sparse(tensor)


# ---------------------------------------------------------------- static info


@api
def shape(x):
    """The symbolic shape of x (an int32 vector)."""
    return Tensor(gb.shape_of(to_node(x)))


def int_shape(x: Any) -> tuple:
    if hasattr(x, "_keras_shape"):
        return tuple(x._keras_shape)
    if isinstance(x, Tensor):
        return tuple(x.shape)
    try:
        return tuple(np.shape(x))
    except Exception:  # noqa: BLE001
        return None  # type: ignore[return-value]


def ndim(x: Any) -> int:
    return len(int_shape(x)) if not isinstance(x, Tensor) else x.ndim


@api
def size(x, name=None):
    node = to_node(x)
    total = node.type.size()
    if total is not None:
        return Tensor(gb.const(total, "int32"), name)
    return Tensor(gb.reduce("prod", gb.shape_of(node)), name)


def dtype(x: Any) -> str:
    if isinstance(x, Tensor):
        return x.dtype
    return np.asarray(x).dtype.name


def count_params(x: Any) -> int:
    return int(np.prod(int_shape(x)))


# ---------------------------------------------------------------- values


@api
def eval(x):  # noqa: A001
    """The value of any tensor (placeholders must have defaults)."""
    from symk.backend._function import evaluate

    return evaluate(x)


def get_value(x: Any) -> np.ndarray:
    if isinstance(x, Variable):
        v = x.value
        return v.copy() if isinstance(v, np.ndarray) else v.get()  # device arrays: copied
    if isinstance(x, Tensor):
        return eval(x)
    raise ArgumentError(f"get_value needs a symk variable, got {type(x).__name__}")


def batch_get_value(ops: Any) -> list:
    return [get_value(x) for x in ops]


@api
def set_value(x, value):
    if not isinstance(x, Variable):
        raise ArgumentError(f"set_value needs a symk variable, got {type(x).__name__}")
    x.set(value)


@api
def batch_set_value(tuples):
    for i, pair in enumerate(tuples):
        is_seq = isinstance(pair, (list, tuple))
        if not is_seq or len(pair) != 2:
            got = f"a {type(pair).__name__} of length {len(pair)}" if is_seq else \
                type(pair).__name__
            raise ArgumentError(f"entry {i} must be a (variable, value) pair, got {got}")
        set_value(*pair)


# ---------------------------------------------------------------- filled tensors


def _shape_node(shape: Any):
    """(static shape tuple, shape-vector node) for a shape given as ints and/or tensors."""
    static, vec = shape_spec(shape)
    if vec is None:
        vec = gb.const(np.asarray(static, np.int32).reshape(len(static)))
    return static, vec


def _filled(shape, value, dtype, name):
    """A variable (as in Keras's backends) when the shape is static, else a symbolic fill."""
    dtype = as_dtype(dtype or config.floatx())
    static, vec = _shape_node(shape)
    if None not in static:
        return variable(np.full(static, value, dtype=dtype), dtype, name)
    return Tensor(apply("fill", [vec], value=value, dtype=dtype, shape=static), name)


@api
def zeros(shape, dtype=None, name=None):
    return _filled(shape, 0, dtype, name)


@api
def ones(shape, dtype=None, name=None):
    return _filled(shape, 1, dtype, name)


@api
def eye(size, dtype=None, name=None):
    """An identity-matrix variable (Keras's backends return a variable)."""
    dims = as_dims(size, "size")
    if len(dims) not in (1, 2):
        raise ArgumentError(f"size must be an int or a pair of ints, got {size!r}")
    dtype = as_dtype(dtype or config.floatx())
    return variable(np.eye(dims[0], dims[-1], dtype=dtype), dtype, name)


@api
def zeros_like(x, dtype=None, name=None):
    return Tensor(gb.fill_like(to_node(x), 0, dtype or to_node(x).dtype), name)


@api
def ones_like(x, dtype=None, name=None):
    return Tensor(gb.fill_like(to_node(x), 1, dtype or to_node(x).dtype), name)


@api
def identity(x, name=None):
    return Tensor(to_node(x), name)


@api
def cast(x, dtype):
    return Tensor(gb.cast(to_node(x), as_dtype(dtype)))


def cast_to_floatx(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=config.floatx())


@api
def print_tensor(x, message=""):
    return Tensor(apply("print", [to_node(x)], message=str(message)))


# ---------------------------------------------------------------- learning phase

_learning_phase_value: int | None = None
_learning_phase_ph: Tensor | None = None


def learning_phase():
    """0/1 if fixed with set_learning_phase, else the symbolic uint8 scalar placeholder
    'keras_learning_phase' (defaults to 0 when not fed)."""
    global _learning_phase_ph
    if _learning_phase_value is not None:
        return _learning_phase_value
    if _learning_phase_ph is None:
        node = apply("placeholder", [], dtype="uint8", shape=(), uid=fresh_uid(),
                     default=ConstValue(np.asarray(0, np.uint8)))
        _learning_phase_ph = Tensor(node, "keras_learning_phase")
        _learning_phase_ph._keras_shape = ()
    return _learning_phase_ph


def set_learning_phase(value: int) -> None:
    global _learning_phase_value
    if value not in (0, 1):
        raise ArgumentError(f"Expected learning phase to be 0 or 1, got {value!r}")
    _learning_phase_value = int(value)


# ---------------------------------------------------------------- random

def _seed(seed):
    """``seed``, or one drawn from numpy's global RNG (as Keras's Theano backend does), so that
    ``np.random.seed(s)`` makes Keras models (initializers, dropout) reproducible."""
    if seed is None:
        return int(np.random.randint(0, 2**31 - 1))
    if not isinstance(seed, (int, np.integer)):
        raise ArgumentError(f"seed must be an int, got {seed!r}")
    return int(seed)


def _random(opname, shape, dtype, seed, **params):
    dtype = as_dtype(dtype or config.floatx())
    static, vec = _shape_node(shape)
    return Tensor(apply(opname, [vec], dtype=dtype, seed=_seed(seed), shape=static, **params))


@api
def random_uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
    return _random("random_uniform", shape, dtype, seed, minval=as_real(minval, "minval"),
                   maxval=as_real(maxval, "maxval"))


@api
def random_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    return _random("random_normal", shape, dtype, seed, mean=as_real(mean, "mean"),
                   stddev=as_real(stddev, "stddev"))


@api
def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    return _random("truncated_normal", shape, dtype, seed, mean=as_real(mean, "mean"),
                   stddev=as_real(stddev, "stddev"))


@api
def random_binomial(shape, p=0.0, dtype=None, seed=None):
    return _random("random_binomial", shape, dtype, seed, p=as_real(p, "p"))


@api
def random_uniform_variable(shape, low, high, dtype=None, name=None, seed=None):
    dtype = as_dtype(dtype or config.floatx())
    rng = np.random.default_rng(_seed(seed))
    return variable(rng.uniform(as_real(low, "low"), as_real(high, "high"),
                                size=as_dims(shape)), dtype, name)


@api
def random_normal_variable(shape, mean, scale, dtype=None, name=None, seed=None):
    dtype = as_dtype(dtype or config.floatx())
    rng = np.random.default_rng(_seed(seed))
    return variable(rng.normal(as_real(mean, "mean"), as_real(scale, "scale"),
                               size=as_dims(shape)), dtype, name)
