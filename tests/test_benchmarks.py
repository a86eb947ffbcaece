"""The benchmarks' hooks into symk still find what they time (a renamed module once left W4's
symk rows empty: the run reported FAILED instead of numbers)."""

from __future__ import annotations

import json

from tests.fresh_python import fresh_python

_CHILD = """
import json, sys
sys.path.insert(0, "benchmarks")
import numpy as np
import bench_cpu
spent = bench_cpu._instrument_symk()
from symk import backend as K
x = K.placeholder((None, 4))
f = K.function([x], [K.tanh(x) * 2.0 + 1.0], device="cpu")
out = f([np.ones((2, 4), np.float32)])[0]
print(json.dumps({"spent": spent, "ok": bool(np.allclose(out, np.tanh(1.0) * 2 + 1))}))
"""


def test_w4_instrumentation_times_the_passes_and_llvm(tmp_path):
    out = fresh_python(_CHILD, env={"SYMK_CACHE_DIR": str(tmp_path), "SYMK_CACHE": "1"})
    got = json.loads(out.strip().splitlines()[-1])
    assert got["ok"]
    assert got["spent"]["optimize"] > 0 and got["spent"]["compile_object"] > 0
