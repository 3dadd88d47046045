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
from typing import NoReturn

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
    p.add_argument("--spec", type=Path, metavar="FILE|NAME",
                   help=f"{what}: a .toml file or a shipped spec's name, see 'returnstudy specs' (default wodc)")


def _verbosity_options() -> argparse.ArgumentParser:
    """-v/-q, accepted after the subcommand too (SUPPRESS: an absent flag keeps the value given before it)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="log each step (-vv for debug output)")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only errors, no progress lines")
    return p


def _command(sub: argparse._SubParsersAction, name: str, helptext: str, examples: Sequence[str], note: str = "") -> argparse.ArgumentParser:
    """A subcommand whose --help ends with worked examples."""
    epilog = "examples:\n" + "\n".join(f"  python -m returnstudy {name} {e}".rstrip() for e in examples)
    if note:
        epilog += "\n" + note
    return sub.add_parser(name, help=helptext, description=helptext, formatter_class=argparse.RawDescriptionHelpFormatter,
                          epilog=epilog, parents=[_verbosity_options()])


def _add_table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wide", action="store_true", help="print every column in full (default: fit 100 columns)")
    p.add_argument("--format", choices=["table", "csv"], default="table", help="table (default) or csv on stdout")


TABLE_WIDTH = 100


def _print_table(df, args: argparse.Namespace, index: bool = False) -> None:  # noqa: ANN001 - DataFrame
    """A table on stdout: fitted to 100 columns (long cells cut with '...', columns wrapped into blocks),
    in full with --wide, or as CSV with --format csv."""
    if getattr(args, "format", "table") == "csv":
        print(df.to_csv(index=index, lineterminator="\n"), end="")
    elif getattr(args, "wide", False):
        print(df.to_string(index=index))
    else:
        print(df.to_string(index=index, line_width=TABLE_WIDTH, max_colwidth=36))


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
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors, no progress lines")
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
    _add_spec_arg(p, "study spec whose [treatments] coding and filters define the estimation sample")
    p.add_argument("--check", action="store_true",
                   help="validate data/agreements/*.csv (dates, codes, sources, duplicates, start basis, spells)")
    p.add_argument("--summary", action="store_true",
                   help="treated corridors per type and adoption year, research coverage of orders, start-date sources")
    p.add_argument("--rule", default=None, choices=["calendar_year", "first_full_year", "share_of_year"],
                   help="switch-on rule (default: the spec's)")
    _add_table_args(p)
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
    _add_table_args(p)
    p.add_argument("--out", type=Path, metavar="FILE.csv", help="also write the flow table as CSV")
    p.set_defaults(func=_cmd_filters)

    p = _command(
        sub, "quality", "Part 1 data-quality diagnostics per reporting country, with verdicts and figures",
        ["--data ../shared/data/eurostat", "--data ../shared/data/eurostat --out reports/"],
    )
    _add_data_args(p)
    _add_spec_arg(p, "study spec whose [quality] thresholds to use")
    p.add_argument("--out", type=Path, metavar="DIR", help="write tables/ and figures/ under DIR")
    _add_table_args(p)
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
    p.add_argument("--keep-going", action="store_true",
                   help="report a model that cannot run as a failed row (status=failed) instead of stopping with an error")
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
        sub, "multiverse", "estimate every combination of analytic choices (the multiverse grid) and summarise the curve",
        ["--data ../shared/data/eurostat --design one_at_a_time",
         "--data ../shared/data/eurostat --design sample --n 500 --backend joblib --jobs 2 --checkpoint mv/ --out mv/",
         "--data ../shared/data/eurostat --design full --backend dask --address tcp://scheduler:8786 --checkpoint mv/"],
        note="The grid (default: the spec's [report] multiverse, data/specs/multiverse.toml) lists every choice and its reason.",
    )
    _add_data_args(p)
    _add_spec_arg(p)
    p.add_argument("--grid", type=Path, metavar="FILE", help="multiverse grid TOML (default: the spec's)")
    p.add_argument("--design", choices=["full", "one_at_a_time", "sample"], help="default: the grid's default_design")
    p.add_argument("--n", type=int, metavar="N", help="specifications to draw with --design sample")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample design (default 0: the grid's)")
    p.add_argument("--backend", choices=["serial", "joblib", "dask", "ray"], default="serial", help="where to run (default serial)")
    p.add_argument("--jobs", type=int, metavar="N", help="workers (joblib; a Dask LocalCluster when no --address)")
    p.add_argument("--address", metavar="URL", help="Dask scheduler (tcp://host:8786) or Ray cluster address")
    p.add_argument("--checkpoint", type=Path, metavar="DIR", help="Parquet checkpoint directory: a rerun resumes from it")
    p.add_argument("--out", type=Path, metavar="DIR", help="write multiverse.csv, summary.txt and the curve figures to DIR")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table", help="stdout: summary table, JSON rows or CSV rows")
    p.set_defaults(func=_cmd_multiverse)

    p = _command(
        sub, "honest", "pre-trends of each event study in words, pre-test power and robust intervals "
        "under violations of parallel trends (Rambachan-Roth relative magnitudes, C-LF)",
        ["--data ../shared/data/eurostat",
         "--data ../shared/data/eurostat --model event_study_eu_agreement --mbar 0,0.5,1,1.5,2",
         "--data ../shared/data/eurostat --format csv > honest.csv"],
        note="Intervals are for the effect in the first year in force; Poisson models also in percent.",
    )
    _add_data_args(p)
    _add_spec_arg(p)
    p.add_argument("--model", metavar="NAME", help="one event-study model of the spec (default: all of them)")
    p.add_argument("--mbar", default="0,0.5,1,1.5,2", metavar="LIST",
                   help="comma-separated values of Mbar (default 0,0.5,1,1.5,2)")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table", help="output format (default table)")
    p.set_defaults(func=_cmd_honest)

    p = _command(
        sub, "report", "regenerate reports/REPORT.md with its figures and tables from the study specs",
        ["--data ../shared/data/eurostat --out reports/",
         "--spec data/specs/wodc.toml --data ../shared/data/eurostat --out /tmp/r"],
    )
    _add_data_args(p)
    p.add_argument("--spec", type=Path, metavar="FILE|NAME", action="append",
                   help="spec file or shipped spec name (repeatable; default: both shipped specs)")
    p.add_argument("--out", type=Path, metavar="DIR", default=Path("reports"), help="output directory (default reports/)")
    p.add_argument("--keep-going", action="store_true",
                   help="report a model that cannot run as a failed row instead of stopping with an error")
    p.add_argument("--jobs", type=int, metavar="N", default=2,
                   help="processes (default 2; -1: every CPU): Part 1, the multiverse section and the sensitivity "
                        "run beside the model fits (on Linux in forked copies of this process), and all processes "
                        "draw the figures; the report is the same for any N")
    p.set_defaults(func=_cmd_report)

    p = _command(sub, "specs", "list the study specs shipped with the package (usable by name with --spec)",
                 ["", "--format csv"])
    p.add_argument("--format", choices=["table", "csv"], default="table", help="table (default) or csv on stdout")
    p.set_defaults(func=_cmd_specs)

    p = _command(
        sub, "compare", "Part 3: two reporting countries on the return of the same citizenships, with the EU+ benchmark",
        ["--data ../shared/data/eurostat --geo NL NO --citizen AF IQ IR",
         "--data ../shared/data/eurostat --geo NL NO --citizen AF IQ IR --out compare/"],
    )
    _add_data_args(p)
    p.add_argument("--geo", nargs="+", default=["NL", "NO"], metavar="GEO", help="reporting countries (default NL NO)")
    p.add_argument("--citizen", nargs="+", default=["AF", "IQ", "IR"], metavar="CODE", help="citizenships (default AF IQ IR)")
    p.add_argument("--covariates", type=Path, metavar="DIR", help="directory with eu_asyapp.csv and frontex_return_operations.csv "
                   "(default: DIR/../covariates of --data)")
    p.add_argument("--out", type=Path, metavar="DIR", help="write tables/ and figures/ under DIR")
    p.set_defaults(func=_cmd_compare)

    p = _command(
        sub, "claims", "the policy response's claims, each with a test, an estimate and a verdict",
        ["--data ../shared/data/eurostat", "--data ../shared/data/eurostat --format json"],
    )
    _add_data_args(p)
    _add_spec_arg(p)
    p.add_argument("--covariates", type=Path, metavar="DIR", help="directory with eu_asyapp.csv (default: DIR/../covariates of --data)")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table", help="output format (default table)")
    p.set_defaults(func=_cmd_claims)
    return parser


def _cmd_fetch(args: argparse.Namespace) -> int:
    from returnstudy.data.cache import REMEDY_IMPORT, cache_status, default_cache_dir
    from returnstudy.data.fetch import fetch

    cache = args.cache or default_cache_dir()
    if args.list:
        from returnstudy.data.tables import HOW_TO_GET_DATA, DataNotAvailableError

        status = cache_status(cache)  # verifies every checksum
        if status.empty:
            raise DataNotAvailableError(f"no tables cached in {cache}. {HOW_TO_GET_DATA}")
        print(f"cache: {cache}")
        for e in status.itertuples(index=False):
            if e.status == "unrecorded":
                print(f"{e.status:10s} {e.dataset:16s} not in manifest.json: vintage unknown, not read\n{'':27s} file: {cache / e.file}")
                continue
            lu = ", ".join(f"{k or 'not given'} ({v} rows)" for k, v in e.last_update.items())
            print(f"{e.status:10s} {e.dataset:16s} rows={e.rows} years={e.years} retrieved={e.retrieved_at} "
                  f"sha256={str(e.sha256)[:12]}  LAST UPDATE: {lu}\n{'':27s} file: {cache / e.file}  source: {e.source}")
        bad = status[status.status != "ok"]
        if not bad.empty:
            print(f"error: {len(bad)} table(s) not usable ({', '.join(f'{d} {s}' for d, s in zip(bad.dataset, bad.status))}); "
                  f"import them again: {REMEDY_IMPORT}", file=sys.stderr)
            return EXIT_ERROR
        return EXIT_OK
    from returnstudy.results import format_last_update

    entries = fetch(args.datasets, cache, from_dir=args.from_dir, timeout=args.timeout, retries=args.retries, progress=sys.stderr.isatty())
    for code, e in entries.items():
        print(f"{code}: {e['rows']} rows, years {e['years']}, LAST UPDATE {format_last_update(e.get('last_update'))} -> {cache / e['file']}")
    return EXIT_OK


def _cmd_panel(args: argparse.Namespace) -> int:
    from returnstudy.panel import load_panel, panel_summary
    from returnstudy.results import format_last_update

    panel = load_panel(args.data, years=args.years, uk_until=args.uk_until, keep_aggregates=args.keep_aggregates)
    if not args.no_treatments:
        from returnstudy.treatments import add_treatments

        panel = add_treatments(panel)
    if args.out:
        _write_output(args.out, panel.to_csv(index=False, lineterminator="\n").encode("utf-8"))
        print(f"wrote {len(panel)} rows x {panel.shape[1]} columns to {args.out}")
    if args.summary or not args.out:
        s = panel_summary(panel)
        print(f"corridor-years: {s['rows']}  corridors: {s['corridors']}  reporting countries: {s['geos']}  "
              f"citizenships: {s['citizens']}  years: {s['years']}")
        for var, v in s["variables"].items():
            print(f"  {var:24s} non-missing {v['non_missing']:>6}  years {v['years']}")
        for code, v in s["vintage"].items():
            print(f"  source {code}: {v.get('source')} sha256={str(v.get('sha256'))[:12]} LAST UPDATE {format_last_update(v.get('last_update'))}")
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
            print("data/agreements: all tables pass the checks (dates, order, codes, sources, duplicates, "
                  "vocabularies, start basis, spells)")
    if args.summary:
        import dataclasses

        from returnstudy.filters import apply_filters
        from returnstudy.panel import load_panel
        from returnstudy.treatments import coverage_shares, start_date_summary

        spec = _load_spec(args.spec)
        coding = spec.treatments if args.rule is None else dataclasses.replace(spec.treatments, rule=args.rule)
        panel = add_treatments(load_panel(args.data), **coding.add_treatments_kwargs())
        tc = panel.attrs["treatment_coding"]
        print(f"treatment coding: rule={tc['rule']} (spec {spec.study.name}); panel {len(panel)} corridor-years")
        _print_table(treatment_summary(panel), args, index=True)
        if getattr(args, "format", "table") == "csv":  # the summary table only
            return status
        # research coverage is measured on the spec's estimation sample (after its filters)
        kwargs = spec.data.load_panel_kwargs()
        if args.data is not None:
            kwargs["data_dir"] = args.data
        sample = apply_filters(add_treatments(load_panel(**kwargs), **coding.add_treatments_kwargs()), spec).panel
        print("\n" + textwrap.fill(
            f"options: binding_start={tc['binding_start']} protocols_as_binding={tc['protocols_as_binding']} "
            f"accession={tc['accession']} unknown_binding={tc['unknown_binding']}", TABLE_WIDTH, subsequent_indent="  "))
        print(textwrap.fill(
            "bilateral instruments by rule (binding_without_start, nonbinding_without_start and *_excluded are not "
            "treated): " + ", ".join(f"{k} {v}" for k, v in tc["bilateral_dropped"].items()),
            TABLE_WIDTH, subsequent_indent="  "))
        cov = coverage_shares(sample)
        print("\nbilateral research coverage, estimation sample (orders to leave in researched corridors):")
        for group, r in cov.iterrows():
            print(f"  {group:24s} {r['share_researched']:6.1%} of {r['weight']:>12,.0f} orders; "
                  f"{int(r['researched_corridors'])} of {int(r['corridors'])} corridors researched")
        dates = start_date_summary()
        print(f"\nbilateral instruments by start basis and legal form\n  ({int(dates['verified'].sum())} of "
              f"{int(dates['rows'].sum())} rows rest on a start date confirmed in the cited source):")
        _print_table(dates, args, index=True)
    return status


def _load_spec(path: Path | None):  # noqa: ANN202 - returns StudySpec
    from returnstudy.spec import load_spec

    return load_spec(path)


def _cmd_filters(args: argparse.Namespace) -> int:
    from returnstudy.filters import apply_filters, describe_filters

    if args.list:
        steps = describe_filters()
        if args.format == "csv" or args.wide:
            _print_table(steps, args)
        else:  # one block per step, wrapped to 100 columns
            for r in steps.itertuples(index=False):
                print(textwrap.fill(r.signature, TABLE_WIDTH, subsequent_indent="    "))
                print(textwrap.fill(r.rationale, TABLE_WIDTH, initial_indent="    ", subsequent_indent="    "))
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
        _write_output(args.out, result.flow.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    return EXIT_OK


def _cmd_quality(args: argparse.Namespace) -> int:
    from returnstudy.quality import quality_report

    spec = _load_spec(args.spec)
    report = quality_report(data_dir=args.data if args.data is not None else spec.data.data_dir, **spec.quality.kwargs())
    summary = report.summary()
    if not (args.wide or args.format == "csv"):  # wrap long lines to 100 columns
        summary = "\n".join(textwrap.fill(line, TABLE_WIDTH, subsequent_indent="    ") if len(line) > TABLE_WIDTH else line
                            for line in summary.splitlines())
    print(summary, file=sys.stderr if args.format == "csv" else sys.stdout)
    _print_table(report.verdicts, args)
    if args.out:
        written = report.save(args.out)
        print(f"wrote {len(written)} files under {args.out}")
    return EXIT_OK


def _cmd_estimate(args: argparse.Namespace) -> int:
    from returnstudy.runner import run_study

    spec = _load_spec(args.spec)
    run = run_study(spec, args.data, progress=not args.quiet, keep_going=args.keep_going)
    eff = run.effects()
    if args.format == "json":
        cols = ["treatment", "model", "estimator", "status", "error", "term", "estimate", "std_error", "ci_low", "ci_high", "irr",
                "pct_effect", "pct_ci_low", "pct_ci_high", "p_value", "n_obs", "n_corridors", "years", "cluster", "n_clusters", "vintage",
                "switching_corridors", "switching_citizenships"]
        print(eff[cols].to_json(orient="records", indent=2, double_precision=15))
    elif args.format == "csv":
        print(eff.to_csv(index=False, lineterminator="\n"), end="")
    else:
        print(_effects_text(run))
    if args.out:
        from returnstudy.plots import plot_event_study
        from returnstudy.report import _save_figure

        args.out.mkdir(parents=True, exist_ok=True)
        _write_output(args.out / f"effects_{run.name}.csv", eff.to_csv(index=False, lineterminator="\n").encode("utf-8"))
        _write_output(args.out / f"filter_flow_{run.name}.csv",
                      run.filtered.flow.to_csv(index=False, lineterminator="\n").encode("utf-8"))
        for m in run.event_studies():
            stem = f"event_study_{run.name}_{m.name}"
            _save_figure(plot_event_study(m.result), args.out, stem)
            for f in args.out.glob(f"{stem}.*"):
                f.chmod(OUTPUT_MODE)
        print(f"wrote tables and figures to {args.out}", file=sys.stderr)
    failed = [m for m in run.models if not m.ok]
    return EXIT_ERROR if failed and len(failed) == len(run.models) else EXIT_OK


OUTPUT_MODE = 0o644  # every file a command writes: readable by everyone, whatever the umask


def _write_output(path: Path, data: bytes) -> None:
    """Write an output file atomically with permissions 0644."""
    from returnstudy.data.cache import atomic_write_bytes

    atomic_write_bytes(path, data)
    path.chmod(OUTPUT_MODE)


def _effect_cells(r, model_params: dict) -> tuple[str, str, float, float, float]:  # noqa: ANN001 - row
    """(effect, 95% CI) in the effect's unit, and (estimate, low, high) in percent for the verdict.

    Poisson models: percent change in returns per order, 100 (exp(b) - 1). Linear models of the
    return rate: percentage points of the rate (100 b). Other linear outcomes: 100 b, labelled
    with the outcome.
    """
    if r.pct_effect == r.pct_effect:
        return (f"{r.pct_effect:+.1f}%", f"[{r.pct_ci_low:+.1f}%, {r.pct_ci_high:+.1f}%]",
                r.pct_effect, r.pct_ci_low, r.pct_ci_high)
    est, lo, hi = 100 * r.estimate, 100 * r.ci_low, 100 * r.ci_high
    outcome = str(model_params.get("outcome", "return_rate"))
    unit = "pp" if outcome == "return_rate" else f"x100 {outcome}"
    return f"{est:+.1f} {unit}", f"[{lo:+.1f}, {hi:+.1f}] {unit}", est, lo, hi


def _effects_text(run) -> str:  # noqa: ANN001 - StudyRun
    """The estimate command's table: per treatment, each model's effect in its unit, 95% CI and verdict."""
    from returnstudy.identification import switching_units
    from returnstudy.verdict import STUDY_HEADLINE, verdict

    eff = run.effects()
    params = {m.name: m.params for m in run.models}
    minimum = int(run.spec.report.get("min_switching_citizenships", 5))
    spec_file = run.spec.path.name if run.spec.path else "in memory"
    lines = [
        f"spec {run.name} ({spec_file}, sha256 {str(run.spec.sha256)[:12]}) on data from {run.data_source()}",
        run.sample_line(),
        textwrap.fill(
            "effect: Poisson models (%) = percent change in returns per order to leave, 100 (exp(b) - 1); "
            "linear models (pp) = percentage points of the return rate; CI = 95% interval; "
            "verdict = the study's headline against this estimate, as in the report", TABLE_WIDTH, subsequent_indent="  "),
    ]
    width = max([len("model")] + [len(str(m)) for m in eff["model"]])
    for treatment, group in eff.groupby("treatment", sort=False):
        t = str(treatment)
        # identifying corridors / citizenships counted on the rows the headline model used
        ok = group[group["status"] == "ok"]
        pick = ok[ok["model"] == run.spec.report.get("headline_model")]
        pick = pick if len(pick) else ok
        n_corr, n_cit = ((int(pick["switching_corridors"].iloc[0]), int(pick["switching_citizenships"].iloc[0]))
                         if len(pick) else switching_units(run.sample, t))
        caution = f" -- fewer than {minimum}: intervals not reliable" if n_cit < minimum else ""
        claim = f"; study: {STUDY_HEADLINE[t][0]}" if t in STUDY_HEADLINE else ""
        lines.append(f"\n{t or '(no treatment)'}: switches on inside the window in {n_corr} corridors, {n_cit} citizenships{caution}{claim}")
        lines.append(f"  {'model':{width}s}  {'effect':>10s}  {'95% CI':24s}  {'p':>5s}  {'n':>6s}  verdict")
        for r in group.itertuples(index=False):
            if r.status != "ok":
                lines.append(f"  {r.model:{width}s}  FAILED: {r.error}")
                continue
            effect, ci, pct, lo, hi = _effect_cells(r, params.get(r.model, {}))
            v = verdict(t, lo, hi, estimate=pct, switching_citizenships=int(r.switching_citizenships),
                        min_switching_citizenships=minimum) \
                if t in STUDY_HEADLINE else ""
            lines.append(f"  {r.model:{width}s}  {effect:>10s}  {ci:24s}  {r.p_value:5.3f}  {int(r.n_obs):6d}  {v}")
    for m in run.event_studies():
        pre = m.result.info.get("pretrend_test")
        lines.append(f"\nevent study {m.name}: leads jointly zero? {pre}")
    return "\n".join(lines)


def _cmd_sensitivity(args: argparse.Namespace) -> int:
    from returnstudy.robustness import DEFAULT_VARIATIONS, sensitivity

    spec = _load_spec(args.spec)
    steps = {f.step for f in spec.filters}
    variations = [v for v in DEFAULT_VARIATIONS if set(v.filters) <= steps]
    result = sensitivity(spec, args.data, model=args.model, variations=variations, progress=not args.quiet)
    print(result.summary())
    if args.out:
        _write_output(args.out, result.table.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    return EXIT_OK


def _cmd_multiverse(args: argparse.Namespace) -> int:
    from returnstudy.multiverse import multiverse

    spec = _load_spec(args.spec)
    result = multiverse(spec, args.data, args.grid, design=args.design, n=args.n, backend=args.backend, n_jobs=args.jobs,
                        address=args.address, checkpoint=args.checkpoint, seed=args.seed, progress=not args.quiet)
    if args.format == "csv":
        print(result.table.to_csv(index=False, lineterminator="\n"), end="")
    elif args.format == "json":
        print(result.table.to_json(orient="records", double_precision=15))
    else:
        print(result.summary())
    if args.out:
        _write_output(args.out / "multiverse.csv", result.table.to_csv(index=False, lineterminator="\n").encode("utf-8"))
        _write_output(args.out / "summary.txt", (result.summary() + "\n").encode("utf-8"))
        for t in result.table.loc[result.table["status"] == "ok", "treatment"].unique():
            fig = result.curve(t)
            args.out.mkdir(parents=True, exist_ok=True)
            fig.savefig(args.out / f"curve_{t}.png", dpi=110)
    return EXIT_OK


def _cmd_honest(args: argparse.Namespace) -> int:
    from returnstudy.honest_report import sensitivity_frame, study_pretrend_reports
    from returnstudy.runner import run_study

    try:
        mbar = [float(x) for x in str(args.mbar).split(",") if x.strip()]
    except ValueError:
        print(f"error: --mbar {args.mbar!r}: expected comma-separated numbers such as 0,0.5,1", file=sys.stderr)
        return EXIT_ERROR
    if not mbar or any(not (x >= 0 and x < float("inf")) for x in mbar):
        print(f"error: --mbar {args.mbar!r}: values must be finite and >= 0", file=sys.stderr)
        return EXIT_ERROR
    run = run_study(_load_spec(args.spec), args.data, progress=not args.quiet)
    reports = study_pretrend_reports(run, args.model, mbar=mbar)
    if not reports:
        print(f"error: spec {run.name!r} has no event-study models", file=sys.stderr)
        return EXIT_ERROR
    table = sensitivity_frame(reports)
    if args.format == "json":
        print(table.to_json(orient="records", indent=2, double_precision=10))
    elif args.format == "csv":
        print(table.to_csv(index=False, lineterminator="\n"), end="")
    else:
        for name, rep in reports.items():
            if isinstance(rep, str):
                print(f"\n{name}: no sensitivity analysis: {rep}")
                continue
            print(f"\n{name}: {rep.verdict}")
            print(textwrap.fill(rep.paragraph, TABLE_WIDTH))
            cols = ["m", "lb", "ub"] + (["pct_lb", "pct_ub"] if rep.poisson else [])
            print(rep.sensitivity[cols].rename(columns={"m": "Mbar"}).to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from returnstudy.data.tables import DataNotAvailableError
    from returnstudy.report import build_report
    from returnstudy.runner import keep_going

    if args.jobs == 0 or args.jobs < -1:
        print(f"error: --jobs {args.jobs}: give a number of processes >= 1, or -1 for every CPU", file=sys.stderr)
        return EXIT_ERROR
    out = Path(args.out)
    absent = [d for d in (out, out / "tables", out / "figures") if not d.exists()]
    try:
        with keep_going(args.keep_going):
            report = build_report(out, specs=args.spec, data_dir=args.data, progress=not args.quiet, n_jobs=args.jobs)
    except (DataNotAvailableError, ValueError, KeyError, FileNotFoundError):
        _remove_empty_dirs(absent)  # a report that could not be made leaves nothing behind
        raise
    print(report.summary())
    return EXIT_OK


def _remove_empty_dirs(dirs: Sequence[Path]) -> None:
    """Remove those of ``dirs`` (created by this run) that are still empty, deepest first."""
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        try:
            d.rmdir()
        except OSError:
            pass


def _cmd_compare(args: argparse.Namespace) -> int:
    from returnstudy.compare import compare_countries
    from returnstudy.panel import load_panel

    result = compare_countries(load_panel(args.data), geos=args.geo, citizens=args.citizen,
                               covariates_dir=args.covariates, data_dir=args.data)
    print(result.summary())
    _print_table(result.gap_by_year, args)
    if args.out:
        written = result.save(args.out)
        print(f"wrote {len(written)} files under {args.out}", file=sys.stderr)
    return EXIT_OK


def _cmd_claims(args: argparse.Namespace) -> int:
    from returnstudy.claims import policy_claims

    result = policy_claims(_load_spec(args.spec), args.data, covariates_dir=args.covariates)
    if args.format == "json":
        print(result.table.to_json(orient="records", indent=2, double_precision=10))
    elif args.format == "csv":
        print(result.table.to_csv(index=False, lineterminator="\n"), end="")
    else:
        print(result.summary())
    return EXIT_OK


def _cmd_specs(args: argparse.Namespace) -> int:
    import pandas as pd

    from returnstudy.spec import load_spec, shipped_specs

    rows = []
    for name, path in shipped_specs().items():
        try:
            spec = load_spec(path)
        except ValueError as exc:  # list it with its problem rather than hide the other specs
            rows.append({"name": name, "title": f"cannot be loaded: {exc}", "models": 0, "years": "", "file": str(path)})
            continue
        years = spec.data.years
        step = next((f for f in spec.filters if f.step == "years" and f.enabled), None)
        if years is None and step is not None:
            years = (step.params.get("start", "first"), step.params.get("end", "last"))
        rows.append({"name": name, "title": spec.study.title, "models": len(spec.models),
                     "years": "-".join(map(str, years)) if years else "all in the data", "file": str(path)})
    table = pd.DataFrame(rows, columns=["name", "title", "models", "years", "file"])
    if args.format == "csv":
        print(table.to_csv(index=False, lineterminator="\n"), end="")
        return EXIT_OK
    for r in table.itertuples(index=False):
        print(f"{r.name}: {r.title} ({r.models} models, years {r.years})")
        print(f"    --spec {r.name}   file: {r.file}")
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
    from returnstudy._threads import one_blas_thread
    from returnstudy.data.cache import CacheError
    from returnstudy.data.fetch import FetchError
    from returnstudy.data.tables import DataNotAvailableError

    out = getattr(args, "out", None)
    if args.command in ("quality", "estimate", "report") and out is not None and out.exists() and not out.is_dir():
        print(f"error: --out {out}: is an existing file; {args.command} writes a directory there", file=sys.stderr)
        return EXIT_ERROR
    try:
        with one_blas_thread():
            return int(args.func(args) or 0)
    except DataNotAvailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_DATA
    except (FetchError, CacheError, ValueError, KeyError, FileNotFoundError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # pragma: no cover - e.g. piping into head
        return EXIT_OK
    except OSError as exc:  # an output path that cannot be written: one line naming it, no traceback
        print(f"error: {_os_error_message(exc)}", file=sys.stderr)
        return EXIT_ERROR


def run() -> NoReturn:
    """Console entry point (``returnstudy`` and ``python -m returnstudy``): :func:`main`, then exit
    with its status, without a last pass of the cyclic collector over everything the command built
    (:func:`returnstudy._collect.skip_final_collection`)."""
    from returnstudy._collect import skip_final_collection

    status = main()
    skip_final_collection()
    raise SystemExit(status)


def _os_error_message(exc: OSError) -> str:
    """One line naming the path and what is wrong with it."""
    import errno

    path = exc.filename if exc.filename is not None else "?"
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        return f"{path}: is a file where a directory is needed (an --out directory or one of its parents names an existing file)"
    if isinstance(exc, IsADirectoryError):
        return f"{path}: is a directory where a file is needed"
    if exc.errno == errno.EROFS or isinstance(exc, PermissionError):
        return f"{path}: cannot write here ({exc.strerror}); choose a writable location"
    return f"{path}: {exc.strerror or exc}"

