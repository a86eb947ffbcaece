"""Graph passes: the rule engine (``rewrite``, ``pattern``), the rule sets (``canonicalize``,
``stabilize``, ``specialize``), whole-graph passes (``blas``, ``collectives``), the
registry and pipeline that run them (``registry``, ``pipeline``), and fusion, scheduling and
memory planning (``fusion``, ``schedule``, ``memory``)."""
