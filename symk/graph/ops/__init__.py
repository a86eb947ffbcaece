"""All op definitions; importing this package registers every op."""

from symk.graph.ops import (  # noqa: F401
    collective,
    conv,
    ctc,
    elementwise,
    leaves,
    linalg,
    nn,
    pool,
    random,
    reduce,
    scan,
    shape,
    sparse,
)
