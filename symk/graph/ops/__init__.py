"""All op definitions; importing this package registers every op."""

from symk.graph.ops import (  # noqa: F401
    elementwise,
    leaves,
    linalg,
    nn,
    random,
    reduce,
    shape,
)
