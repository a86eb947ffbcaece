"""symk's version: part of every cache key (``runtime/cache``, ``runtime/plan_cache``), so a
new release never loads code or plans an older one stored.  Below every layer."""

__version__ = "0.1.0"
