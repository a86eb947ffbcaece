"""Worker: rank 1 raises while rank 0 waits in a collective; run under ``python -m mpi4py``
the job aborts (every rank exits with an error) instead of hanging."""

from __future__ import annotations

import numpy as np
from common import ROOT  # noqa: F401  (puts the repository on sys.path)

from symk import backend as K
from symk import distributed as hvd

hvd.init()
x = K.placeholder((4,))
f = K.function([x], [hvd.allreduce(x)])
f([np.ones(4, "float32")])
if hvd.rank() == 1:
    raise RuntimeError("rank 1 fails on purpose")
f([np.ones(4, "float32")])  # rank 0 waits here for rank 1
print("failure: rank 0 was not stopped", flush=True)
