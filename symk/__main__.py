"""``python -m symk cache info|clear``: inspect or empty the compiled-kernel and plan caches."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "cache" or argv[1] not in ("info", "clear"):
        print("usage: python -m symk cache info|clear", file=sys.stderr)
        return 2
    from symk.runtime import cache

    if argv[1] == "info":
        i = cache.info()
        print(f"cache dir: {i['dir'] or '(disabled: SYMK_CACHE=0)'}")
        if i["refused"]:
            print(f"refused:   {i['refused']} (not used; see README, Cache security)")
        print(f"entries:   {i['entries']} ({i['bytes'] / 1024:.1f} KiB)")
        print(f"plans:     {i['plans']}")
        return 0
    from symk import config

    print(f"removed {cache.clear()} file(s) from {config.cache_dir()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
