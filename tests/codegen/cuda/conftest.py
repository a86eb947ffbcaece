"""Runs the op-suite kernel compile check after every other test of the session, so that it
sees the kernels the op tests compiled in this same session (``tests.harness.KERNEL_CORPUS``)."""

from __future__ import annotations


def pytest_collection_modifyitems(session, config, items) -> None:  # noqa: ARG001
    last = [it for it in items if it.name == "test_op_suite_kernels_compile"]
    if last:
        items[:] = [it for it in items if it not in last] + last
