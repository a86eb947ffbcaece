"""What a computation is: immutable hash-consed Nodes, their Types, the op registry,
reverse-mode differentiation and graph printing. Imports nothing from the layers above it
(passes, codegen, runtime, backend; ``tests/graph/test_layering.py`` checks it)."""

from symk.graph.node import Node, apply, creation_line, node_name
from symk.graph.types import Type

__all__ = ["Node", "Type", "apply", "creation_line", "node_name"]

import symk.graph.ops  # noqa: E402,F401  (registers every op)
