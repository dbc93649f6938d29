"""The study coordinator's command: invite readers, list and revoke them, follow their progress.

    mammo-readers add R01 R02 --run-dir runs/x [--host reader.example.org --port 443 --scheme https]
    mammo-readers add R01 --new-token --run-dir runs/x      (a lost link: a new one, the old stops)
    mammo-readers add R02 --reinstate --run-dir runs/x      (a revoked reader rates again)
    mammo-readers list --run-dir runs/x
    mammo-readers revoke R02 --run-dir runs/x
    mammo-readers progress --run-dir runs/x

(``python -m mammo_lib.reader_study.readers_cli ...`` is the same.) ``add`` prints each reader's personal link
once; only a digest of its token is stored (:mod:`mammo_lib.reader_study.invitations`). ``add`` refuses the
whole command, writing nothing, if an id is given twice, is revoked (``--reinstate``) or already
has an invitation (``--new-token``). ``progress`` prints,
per reader, the cases answered of all, the last activity and the median reading time per case.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_lib.reader_study.files import (
    CaseSet,
    ReaderStudyError,
    default_case_set_dir,
    open_case_set,
    read_ratings,
    reading_times,
)
from mammo_lib.reader_study.invitations import (
    InvitationError,
    Reader,
    add_readers,
    invitation_link,
    load_registry,
    readable_time,
    registry_path,
    revoke_reader,
)
from mammo_lib.reader_study.rating_server import host_argument, port_argument

PROGRESS_COLUMNS = ["reader", "kind", "status", "answered", "of", "revised", "last activity",
                    "median s per case", "total s"]


def progress_table(case_set: CaseSet) -> pd.DataFrame:
    """Per reader (invited or with a ratings file): how far they are.

    Parameters
    ----------
    case_set : CaseSet

    Returns
    -------
    DataFrame
        reader, kind (human/machine), status (invited / revoked / not invited / machine),
        answered (cases with an answer), of (cases in the set), revised (answers revised),
        last activity (ISO 8601 UTC of the last answer, or ""), median s per case and total s
        (reading time from shown to answered, first answers of humans; NaN when none).

    Raises
    ------
    RatingsError
        If a ratings file breaks the format.
    """
    registry = load_registry(case_set.case_set_dir.parent)
    files = {p.stem: p for p in sorted(case_set.ratings_dir.glob("*.jsonl"))}
    rows = []
    for reader in sorted(set(registry) | set(files)):
        log = read_ratings(files[reader], case_set) if reader in files else None
        records = log.records if log else []
        kind = records[0]["reader_kind"] if records else "human"
        status = ("machine" if kind == "machine" else "not invited" if reader not in registry
                  else "revoked" if not registry[reader].active else "invited")
        timing = pd.DataFrame(records).reindex(columns=["reader", "reader_kind", "event", "shown_at", "answered_at"])
        times = reading_times(timing).get(reader, [])
        stamps = [r.get("answered_at") for r in records if r.get("answered_at")]
        rows.append({"reader": reader, "kind": kind, "status": status,
                     "answered": len({r["case_id"] for r in records}), "of": len(case_set.case_ids),
                     "revised": sum(r.get("event") == "revise" for r in records),
                     "last activity": max(stamps) if stamps else "",
                     "median s per case": float(np.median(times)) if times else np.nan,
                     "total s": float(np.sum(times)) if times else np.nan})
    return pd.DataFrame(rows, columns=PROGRESS_COLUMNS)


def _case_set(args) -> CaseSet:
    case_set_dir = Path(args.case_set_dir) if args.case_set_dir else default_case_set_dir(args.run_dir)
    return open_case_set(case_set_dir, check_images=False)


def _add_summary(before: dict[str, Reader], readers: list[str]) -> str:
    new = [r for r in readers if r not in before]
    renewed = [r for r in readers if r in before and before[r].active]
    back = [r for r in readers if r in before and not before[r].active]
    parts = [f"invited {', '.join(new)}"] if new else []
    if renewed:
        parts.append(f"new link for {', '.join(renewed)} (the old link no longer opens the page)")
    if back:
        parts.append(f"reinstated {', '.join(back)} (the revocation stays recorded in the registry)")
    return "; ".join(parts)


def _cmd_add(args, case_set: CaseSet) -> int:
    root = case_set.case_set_dir.parent
    before = load_registry(root)
    try:
        tokens = add_readers(root, args.readers, new_token=args.new_token, reinstate=args.reinstate)
    except InvitationError as exc:
        raise InvitationError(f"{exc}; nothing was changed") from exc
    print(f"case set {case_set.case_set_id}: {_add_summary(before, args.readers)}; send each their own "
          "link (it is shown only now):")
    for reader, token in tokens.items():
        print(f"  {reader}: {invitation_link(token, args.host, args.port, args.scheme)}")
    return 0


def _reader_state(r: Reader) -> str:
    past = [f"revoked {readable_time(h.get('revoked_at'))}, reinstated {readable_time(h.get('at'))}"
            for h in r.history if h.get("event") == "reinstated"]
    now = f"revoked {readable_time(r.revoked_at)}" if r.revoked_at else "active"
    return "; ".join([now, *past])


def _cmd_list(args, case_set: CaseSet) -> int:
    registry = load_registry(case_set.case_set_dir.parent)
    if not registry:
        print(f"nobody is invited yet ({registry_path(case_set.case_set_dir.parent)} does not exist)")
        return 0
    for r in sorted(registry.values(), key=lambda r: r.reader_id):
        print(f"  {r.reader_id:<12} added {readable_time(r.added_at)}  {_reader_state(r)}")
    return 0


def _cmd_revoke(args, case_set: CaseSet) -> int:
    root = case_set.case_set_dir.parent
    before = load_registry(root)
    for reader in args.readers:
        if reader in before and not before[reader].active:
            print(f"{reader} was already revoked on {readable_time(before[reader].revoked_at)}; nothing to do")
            continue
        revoke_reader(root, reader)
        print(f"revoked {reader}: their link no longer opens the page (their ratings are kept; "
              f"'mammo-readers add {reader} --reinstate' lets them rate again)")
    return 0


def _cmd_progress(args, case_set: CaseSet) -> int:
    table = progress_table(case_set)
    if table.empty:
        print("no reader is invited and nobody has rated yet")
    else:
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``mammo-readers`` argument parser (subcommands add, list, revoke, progress)."""
    parser = argparse.ArgumentParser(prog="mammo-readers", description="Invite and follow the readers of a study")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("add", "invite readers and print their personal links"),
                            ("list", "list invited readers"), ("revoke", "withdraw readers' links"),
                            ("progress", "answered / total, last activity, median time per case")):
        p = sub.add_parser(name, help=help_text)
        if name in ("add", "revoke"):
            p.add_argument("readers", nargs="+", help="reader ids, e.g. R01 R02")
        p.add_argument("--run-dir", default=None, help="run folder (case set under reader_study/case_set)")
        p.add_argument("--case-set-dir", default=None, help="the case_set folder (instead of --run-dir)")
        if name == "add":
            p.add_argument("--host", default="127.0.0.1", type=host_argument,
                           help="host name readers use to reach the page")
            p.add_argument("--port", type=port_argument, default=8866, help="port in the link (1-65535)")
            p.add_argument("--scheme", default="http", choices=["http", "https"],
                           help="https when the page is behind a TLS reverse proxy")
            again = p.add_mutually_exclusive_group()
            again.add_argument("--new-token", action="store_true",
                               help="issue new links for active readers who lost theirs (old links stop working)")
            again.add_argument("--reinstate", action="store_true",
                               help="let revoked readers rate again, with a new link (the revocation stays "
                                    "recorded)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mammo-readers``; returns the exit status (1 with a message on a refusal)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.case_set_dir and not args.run_dir:
        parser.error("give --run-dir or --case-set-dir")
    commands = {"add": _cmd_add, "list": _cmd_list, "revoke": _cmd_revoke, "progress": _cmd_progress}
    try:
        return commands[args.command](args, _case_set(args))
    except (InvitationError, ReaderStudyError) as exc:
        print(f"mammo-readers {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
