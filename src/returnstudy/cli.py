"""Command-line interface: ``python -m returnstudy <subcommand>``.

The CLI only wires library functions together; every computation lives in the
library so that a notebook gets the same numbers.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("returnstudy")

EXIT_OK, EXIT_ERROR, EXIT_NO_DATA = 0, 1, 3


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        metavar="DIR",
        type=Path,
        help="read Eurostat tables from DIR (a snapshot such as ../shared/data/eurostat, or a cache); "
        "default: the cache filled by 'fetch'",
    )


def _parser(prog: str = "returnstudy") -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Do readmission agreements raise return from the EU+? Reproduce and stress-test the WODC study on Eurostat data.",
        formatter_class=fmt,
        epilog=textwrap.dedent(
            """\
            examples:
              python -m returnstudy estimate --data ../shared/data/eurostat
              python -m returnstudy fetch                      # download from Eurostat (online)
              python -m returnstudy fetch --from ../shared/data/eurostat
              python -m returnstudy report --data ../shared/data/eurostat --out reports/
            """
        ),
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "fetch",
        help="download Eurostat tables into the cache (or import a snapshot with --from)",
        formatter_class=fmt,
        epilog=textwrap.dedent(
            """\
            examples:
              python -m returnstudy fetch                                   # all tables, from Eurostat's API
              python -m returnstudy fetch --datasets migr_eiord migr_eirtn
              python -m returnstudy fetch --from ../shared/data/eurostat    # offline snapshot
              python -m returnstudy fetch --list                            # what is cached, with vintages
            The cache is $RETURNSTUDY_DATA_DIR, or a per-user cache directory.
            """
        ),
    )
    p.add_argument("--datasets", nargs="+", metavar="CODE", help="Eurostat table codes (default: all supported)")
    p.add_argument("--from", dest="from_dir", metavar="DIR", type=Path, help="import tables from a snapshot directory instead")
    p.add_argument("--cache", metavar="DIR", type=Path, help="cache directory (default: $RETURNSTUDY_DATA_DIR or the user cache)")
    p.add_argument("--list", action="store_true", help="show the cached tables and their vintages, then exit")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before a stalled download is retried (default 60)")
    p.add_argument("--retries", type=int, default=3, help="retries per table on network errors (default 3)")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser(
        "panel",
        help="build the corridor-year panel (geo x citizenship x year) and write or summarise it",
        formatter_class=fmt,
        epilog=textwrap.dedent(
            """\
            examples:
              python -m returnstudy panel --data ../shared/data/eurostat --summary
              python -m returnstudy panel --data ../shared/data/eurostat --out panel.csv
              python -m returnstudy panel --years 2012 2016 --no-treatments --out panel.csv
            """
        ),
    )
    _add_data_args(p)
    p.add_argument("--out", metavar="FILE.csv", type=Path, help="write the panel as CSV")
    p.add_argument("--summary", action="store_true", help="print corridors, years and coverage by geo and year")
    p.add_argument("--years", nargs=2, type=int, metavar=("FIRST", "LAST"), help="restrict to these years (inclusive)")
    p.add_argument("--uk-until", type=int, metavar="YEAR", help="drop the UK from the EU+ group after YEAR")
    p.add_argument("--keep-aggregates", action="store_true", help="keep TOTAL, EU28, STLS, UNK and other aggregate codes")
    p.add_argument("--no-treatments", action="store_true", help="do not add the treatment columns")
    p.set_defaults(func=_cmd_panel)

    return parser


def _cmd_fetch(args: argparse.Namespace) -> int:
    from returnstudy.data.cache import default_cache_dir, read_manifest
    from returnstudy.data.fetch import fetch

    cache = args.cache or default_cache_dir()
    if args.list:
        manifest = read_manifest(cache)
        if not manifest:
            print(f"no tables cached in {cache}")
            return EXIT_OK
        print(f"cache: {cache}")
        for code, e in manifest.items():
            lu = ", ".join(f"{k or 'not given'} ({v} rows)" for k, v in e.get("last_update", {}).items())
            print(
                f"{code:16s} rows={e.get('rows'):>7} years={e.get('years')} retrieved={e.get('retrieved_at')} "
                f"sha256={str(e.get('sha256'))[:12]}  LAST UPDATE: {lu}\n{'':16s} source: {e.get('source')}"
            )
        return EXIT_OK
    entries = fetch(args.datasets, cache, from_dir=args.from_dir, timeout=args.timeout, retries=args.retries, progress=sys.stderr.isatty())
    for code, e in entries.items():
        print(f"{code}: {e['rows']} rows, years {e['years']}, LAST UPDATE {e['last_update']} -> {cache / e['file']}")
    return EXIT_OK


def _cmd_panel(args: argparse.Namespace) -> int:
    from returnstudy.panel import load_panel, panel_summary

    panel = load_panel(args.data, years=args.years, uk_until=args.uk_until, keep_aggregates=args.keep_aggregates)
    if not args.no_treatments:
        from returnstudy.treatments import add_treatments

        panel = add_treatments(panel)
    if args.out:
        from returnstudy.data.cache import atomic_write_bytes

        atomic_write_bytes(args.out, panel.to_csv(index=False, lineterminator="\n").encode("utf-8"))
        print(f"wrote {len(panel)} rows x {panel.shape[1]} columns to {args.out}")
    if args.summary or not args.out:
        s = panel_summary(panel)
        print(f"corridor-years: {s['rows']}  corridors: {s['corridors']}  reporting countries: {s['geos']}  "
              f"citizenships: {s['citizens']}  years: {s['years']}")
        for var, v in s["variables"].items():
            print(f"  {var:24s} non-missing {v['non_missing']:>6}  years {v['years']}")
        for code, v in s["vintage"].items():
            print(f"  source {code}: {v.get('source')} sha256={str(v.get('sha256'))[:12]} LAST UPDATE {v.get('last_update')}")
        print("corridors with orders and returns observed, by reporting country and year:")
        print(s["coverage"].to_string())
    return EXIT_OK


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    _configure_logging(args.verbose, args.quiet)
    from returnstudy.data.cache import CacheIntegrityError
    from returnstudy.data.fetch import FetchError
    from returnstudy.data.tables import DataNotAvailableError

    try:
        return int(args.func(args) or 0)
    except DataNotAvailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_DATA
    except (FetchError, CacheIntegrityError, ValueError, KeyError, FileNotFoundError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # pragma: no cover - e.g. piping into head
        return EXIT_OK

