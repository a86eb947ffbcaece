"""Runs the tests that consume the op suite (the kernel compile check and the emulator replay)
after every other test of the session, so that they see what the op tests compiled and recorded
in this same session (``tests.harness.KERNEL_CORPUS``, ``tests.harness.OP_CASES``)."""

from __future__ import annotations

#: the tests that read the op suite's results
LAST = {"test_op_suite_kernels_compile", "test_op_suite_emulated",
        "test_op_suite_emulator_coverage"}


def pytest_collection_modifyitems(session, config, items) -> None:  # noqa: ARG001
    last = [it for it in items if it.name in LAST]
    if last:
        items[:] = [it for it in items if it not in last] + last
