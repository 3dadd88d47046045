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


def _add_spec_arg(p: argparse.ArgumentParser, what: str = "study spec") -> None:
    p.add_argument("--spec", type=Path, metavar="FILE", help=f"{what} (default data/specs/wodc.toml)")


def _command(sub: argparse._SubParsersAction, name: str, helptext: str, examples: Sequence[str], note: str = "") -> argparse.ArgumentParser:
    """A subcommand whose --help ends with worked examples."""
    epilog = "examples:\n" + "\n".join(f"  python -m returnstudy {name} {e}".rstrip() for e in examples)
    if note:
        epilog += "\n" + note
    return sub.add_parser(name, help=helptext, description=helptext, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog)


def _parser(prog: str = "returnstudy") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Do readmission agreements raise return from the EU+? Reproduce and stress-test the WODC study on Eurostat data.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log each step (-vv for debug output)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = _command(
        sub, "fetch", "download Eurostat tables into the cache (or import a snapshot with --from)",
        ["                                  # all tables, from Eurostat's API",
         "--datasets migr_eiord migr_eirtn",
         "--from ../shared/data/eurostat   # offline snapshot",
         "--list                           # what is cached, with vintages"],
        note="The cache is $RETURNSTUDY_DATA_DIR, or a per-user cache directory.",
    )
    p.add_argument("--datasets", nargs="+", metavar="CODE", help="Eurostat table codes (default: all supported)")
    p.add_argument("--from", dest="from_dir", metavar="DIR", type=Path, help="import tables from a snapshot directory instead")
    p.add_argument("--cache", metavar="DIR", type=Path, help="cache directory (default: $RETURNSTUDY_DATA_DIR or the user cache)")
    p.add_argument("--list", action="store_true", help="show the cached tables and their vintages, then exit")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before a stalled download is retried (default 60)")
    p.add_argument("--retries", type=int, default=3, help="retries per table on network errors (default 3)")
    p.set_defaults(func=_cmd_fetch)

    p = _command(
        sub, "panel", "build the corridor-year panel (geo x citizenship x year) and write or summarise it",
        ["--data ../shared/data/eurostat --summary",
         "--data ../shared/data/eurostat --out panel.csv",
         "--years 2012 2016 --no-treatments --out panel.csv"],
    )
    _add_data_args(p)
    p.add_argument("--out", metavar="FILE.csv", type=Path, help="write the panel as CSV")
    p.add_argument("--summary", action="store_true", help="print corridors, years and coverage by geo and year")
    p.add_argument("--years", nargs=2, type=int, metavar=("FIRST", "LAST"), help="restrict to these years (inclusive)")
    p.add_argument("--uk-until", type=int, metavar="YEAR", help="drop the UK from the EU+ group after YEAR")
    p.add_argument("--keep-aggregates", action="store_true", help="keep TOTAL, EU28, STLS, UNK and other aggregate codes")
    p.add_argument("--no-treatments", action="store_true", help="do not add the treatment columns")
    p.set_defaults(func=_cmd_panel)

    p = _command(
        sub, "treatments", "check the agreements tables and summarise treated corridors by type and adoption year",
        ["--check",
         "--summary --data ../shared/data/eurostat",
         "--summary --rule first_full_year --data ../shared/data/eurostat"],
    )
    _add_data_args(p)
    p.add_argument("--check", action="store_true", help="validate data/agreements/*.csv (dates, codes, sources, duplicates)")
    p.add_argument("--summary", action="store_true", help="treated corridors and corridor-years per type and adoption year")
    p.add_argument("--rule", default="calendar_year", choices=["calendar_year", "first_full_year", "share_of_year"],
                   help="switch-on rule (default calendar_year)")
    p.set_defaults(func=_cmd_treatments)

    p = _command(
        sub, "filters", "apply the spec's sample filters and print the flow table (rows, corridors, orders, returns per step)",
        ["--data ../shared/data/eurostat",
         "--spec data/specs/third_country_2014_2023.toml --data ../shared/data/eurostat",
         "--list        # every available step with its parameters"],
    )
    _add_data_args(p)
    _add_spec_arg(p)
    p.add_argument("--list", action="store_true", help="list the available filter steps and exit")
    p.add_argument("--out", type=Path, metavar="FILE.csv", help="also write the flow table as CSV")
    p.set_defaults(func=_cmd_filters)

    p = _command(
        sub, "quality", "Part 1 data-quality diagnostics per reporting country, with verdicts and figures",
        ["--data ../shared/data/eurostat", "--data ../shared/data/eurostat --out reports/"],
    )
    _add_data_args(p)
    _add_spec_arg(p, "study spec whose [quality] thresholds to use")
    p.add_argument("--out", type=Path, metavar="DIR", help="write tables/ and figures/ under DIR")
    p.set_defaults(func=_cmd_quality)

    p = _command(
        sub, "estimate", "run the study spec: effects of each treatment type under each model, with intervals",
        ["--data ../shared/data/eurostat",
         "--data ../shared/data/eurostat --format json",
         "--spec data/specs/third_country_2014_2023.toml --data ../shared/data/eurostat",
         "--data ../shared/data/eurostat --out results/"],
    )
    _add_data_args(p)
    _add_spec_arg(p)
    p.add_argument("--format", choices=["table", "json", "csv"], default="table", help="output format (default table)")
    p.add_argument("--out", type=Path, metavar="DIR", help="also write the effects table, flow table and event-study figures to DIR")
    p.set_defaults(func=_cmd_estimate)

    p = _command(
        sub, "sensitivity", "re-estimate the spec's headline model under alternative analytic choices, one at a time",
        ["--data ../shared/data/eurostat",
         "--data ../shared/data/eurostat --model twfe_rate --out sensitivity.csv",
         "--spec data/specs/third_country_2014_2023.toml --data ../shared/data/eurostat"],
    )
    _add_data_args(p)
    _add_spec_arg(p)
    p.add_argument("--model", metavar="NAME", help="model of the spec to vary (default: the spec's [report] headline_model)")
    p.add_argument("--out", type=Path, metavar="FILE.csv", help="also write the tidy table as CSV")
    p.set_defaults(func=_cmd_sensitivity)

    p = _command(
        sub, "report", "regenerate reports/REPORT.md with its figures and tables from the study specs",
        ["--data ../shared/data/eurostat --out reports/",
         "--spec data/specs/wodc.toml --data ../shared/data/eurostat --out /tmp/r"],
    )
    _add_data_args(p)
    p.add_argument("--spec", type=Path, metavar="FILE", action="append", help="spec file (repeatable; default: both shipped specs)")
    p.add_argument("--out", type=Path, metavar="DIR", default=Path("reports"), help="output directory (default reports/)")
    p.set_defaults(func=_cmd_report)
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


def _cmd_treatments(args: argparse.Namespace) -> int:
    from returnstudy.treatments import add_treatments, check_agreements, treatment_summary

    if not (args.check or args.summary):
        args.check = args.summary = True
    status = EXIT_OK
    if args.check:
        problems = check_agreements()
        if problems:
            print(f"{len(problems)} problem(s) in data/agreements:")
            for line in problems:
                print(f"  {line}")
            status = EXIT_ERROR
        else:
            print("data/agreements: all tables pass the checks (dates, order, codes, sources, duplicates)")
    if args.summary:
        from returnstudy.panel import load_panel

        panel = add_treatments(load_panel(args.data), rule=args.rule)
        print(f"treatment coding: rule={args.rule}; panel {len(panel)} corridor-years")
        print(treatment_summary(panel).to_string())
    return status


def _load_spec(path: Path | None):  # noqa: ANN202 - returns StudySpec
    from returnstudy.spec import load_spec

    return load_spec(path)


def _cmd_filters(args: argparse.Namespace) -> int:
    from returnstudy.filters import apply_filters, describe_filters

    if args.list:
        print(describe_filters().to_string(index=False))
        return EXIT_OK
    from returnstudy.panel import load_panel
    from returnstudy.treatments import add_treatments

    spec = _load_spec(args.spec)
    kwargs = spec.data.load_panel_kwargs()
    if args.data is not None:
        kwargs["data_dir"] = args.data
    panel = add_treatments(load_panel(**kwargs), **spec.treatments.add_treatments_kwargs())
    result = apply_filters(panel, spec)
    print(spec.describe())
    print(result.summary())
    if args.out:
        from returnstudy.data.cache import atomic_write_bytes

        atomic_write_bytes(args.out, result.flow.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    return EXIT_OK


def _cmd_quality(args: argparse.Namespace) -> int:
    from returnstudy.quality import quality_report

    spec = _load_spec(args.spec)
    report = quality_report(data_dir=args.data if args.data is not None else spec.data.data_dir, **spec.quality.kwargs())
    print(report.summary())
    print(report.verdicts.to_string(index=False))
    if args.out:
        written = report.save(args.out)
        print(f"wrote {len(written)} files under {args.out}")
    return EXIT_OK


def _cmd_estimate(args: argparse.Namespace) -> int:
    from returnstudy.runner import run_study

    spec = _load_spec(args.spec)
    run = run_study(spec, args.data, progress=sys.stderr.isatty())
    eff = run.effects()
    if args.format == "json":
        cols = ["treatment", "model", "estimator", "term", "estimate", "std_error", "ci_low", "ci_high", "irr", "pct_effect",
                "pct_ci_low", "pct_ci_high", "p_value", "n_obs", "n_corridors", "years", "cluster", "n_clusters", "vintage"]
        print(eff[cols].to_json(orient="records", indent=2, double_precision=10))
    elif args.format == "csv":
        print(eff.to_csv(index=False, lineterminator="\n"), end="")
    else:
        print(run.header())
        print(_effects_text(run))
    if args.out:
        from returnstudy.report import _save_figure
        from returnstudy.plots import plot_event_study

        args.out.mkdir(parents=True, exist_ok=True)
        eff.to_csv(args.out / f"effects_{run.name}.csv", index=False, lineterminator="\n")
        run.filtered.flow.to_csv(args.out / f"filter_flow_{run.name}.csv", index=False, lineterminator="\n")
        for m in run.event_studies():
            _save_figure(plot_event_study(m.result), args.out, f"event_study_{run.name}_{m.name}")
        print(f"wrote tables and figures to {args.out}", file=sys.stderr)
    failed = [m for m in run.models if not m.ok]
    return EXIT_ERROR if failed and len(failed) == len(run.models) else EXIT_OK


def _effects_text(run) -> str:  # noqa: ANN001 - StudyRun
    lines = []
    eff = run.effects()
    from returnstudy.report import switching_units

    minimum = int(run.spec.report.get("min_switching_citizenships", 5))
    for treatment, group in eff.groupby("treatment", sort=False):
        n_corr, n_cit = switching_units(run.sample, str(treatment))
        caution = f"  -- fewer than {minimum}: intervals not reliable" if n_cit < minimum else ""
        lines.append(f"\n{treatment} (switches on inside the window in {n_corr} corridors, {n_cit} citizenships{caution})")
        for r in group.itertuples(index=False):
            if r.pct_effect == r.pct_effect:  # Poisson: percent change in returns
                effect = f"{r.pct_effect:+7.1f}% [{r.pct_ci_low:+.1f}, {r.pct_ci_high:+.1f}]"
            else:
                effect = f"{r.estimate:+8.4f} [{r.ci_low:+.4f}, {r.ci_high:+.4f}]"
            lines.append(f"  {r.model:28s} {effect}  p={r.p_value:.3f}  n={r.n_obs} corridors={r.n_corridors} years={r.years}")
    for m in run.models:
        if not m.ok:
            lines.append(f"\nmodel {m.name} ({m.estimator}) failed: {m.error}")
    for m in run.event_studies():
        pre = m.result.info.get("pretrend_test")
        lines.append(f"\nevent study {m.name}: leads jointly zero? {pre}")
    return "\n".join(lines)


def _cmd_sensitivity(args: argparse.Namespace) -> int:
    from returnstudy.robustness import DEFAULT_VARIATIONS, sensitivity

    spec = _load_spec(args.spec)
    steps = {f.step for f in spec.filters}
    variations = [v for v in DEFAULT_VARIATIONS if set(v.filters) <= steps]
    result = sensitivity(spec, args.data, model=args.model, variations=variations, progress=sys.stderr.isatty())
    print(result.summary())
    if args.out:
        from returnstudy.data.cache import atomic_write_bytes

        atomic_write_bytes(args.out, result.table.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from returnstudy.report import build_report

    report = build_report(args.out, specs=args.spec, data_dir=args.data, progress=sys.stderr.isatty())
    print(report.summary())
    return EXIT_OK


def _configure_logging(verbose: int, quiet: bool) -> None:
    # default: warnings only (what was dropped and why is in every summary); -v adds each step's log
    level = logging.ERROR if quiet else {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
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

