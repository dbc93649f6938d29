"""Invitations to the reader study: readers are created by the coordinator, each with an
unguessable token, and the rating page identifies a reader by the token in their personal link
(``http://host:port/?reader=<token>``) alone.

The registry is ``<study_root>/access/readers.json`` (``study_root`` = ``<run_dir>/reader_study``),
beside the case set and never inside it, so copying ``case_set/`` to the serving machine never
copies it; Voila serves no files. Only the SHA-256 of each token is stored: the token itself is
printed once, when the reader is added (add the reader again with ``--new-token`` if it is lost).
A revoked reader stays revoked: ``add`` refuses them unless asked to ``--reinstate`` them, and a
reinstatement keeps the revocation in the reader's ``history`` (so the registry shows who could
rate when).

Reader ids are 1-32 letters, digits, '_' or '-', unique regardless of case (``r01`` and ``R01``
cannot both exist), and ids of machine observers (``machine-*``) are reserved.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from mammo_lib.clock import now_iso
from mammo_lib.fileio import write_json
from mammo_lib.reader_study.files import READER_ID_PATTERN, ReaderStudyError

ACCESS_DIRNAME = "access"
REGISTRY_NAME = "readers.json"
RESERVED_PREFIX = "machine-"


class InvitationError(ReaderStudyError):
    """A reader id or token that the registry refuses; the message says why and what to do."""


def registry_path(study_root: str | os.PathLike) -> Path:
    """``<study_root>/access/readers.json``."""
    return Path(study_root) / ACCESS_DIRNAME / REGISTRY_NAME


def token_digest(token: str) -> str:
    """SHA-256 hex digest of a token (what the registry stores)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_new_reader_id(reader_id: str, existing: list[str] = ()) -> str:
    """Return ``reader_id`` if it may name a new human reader.

    Raises
    ------
    InvitationError
        If it has surrounding spaces or other characters than letters, digits, '_' and '-', is
        longer than 32, is reserved for machine observers, or differs from an existing id only
        in case.
    """
    if not isinstance(reader_id, str) or not READER_ID_PATTERN.match(reader_id):
        raise InvitationError(f"reader id {reader_id!r} is not valid: use 1-32 letters, digits, '_' or '-' "
                              "with no spaces (for example R01)")
    if reader_id.lower().startswith(RESERVED_PREFIX):
        raise InvitationError(f"reader id {reader_id!r} is reserved: ids starting with {RESERVED_PREFIX!r} "
                              "belong to machine observers")
    clash = [e for e in existing if e.lower() == reader_id.lower() and e != reader_id]
    if clash:
        raise InvitationError(f"reader id {reader_id!r} differs from the existing reader {clash[0]!r} only in "
                              "upper/lower case; use that id or a clearly different one")
    return reader_id


@dataclass
class Reader:
    """One invited reader as the registry holds it (never the token itself).

    ``added_at`` is the first invitation; ``history`` lists what happened since, oldest first:
    ``{"event": "new_token", "at": ...}`` and ``{"event": "reinstated", "at": ..., "revoked_at": ...}``.
    """

    reader_id: str
    token_sha256: str
    added_at: str
    revoked_at: str | None = None
    history: list[dict] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def readable_time(stamp: str | None) -> str:
    """An ISO 8601 UTC stamp of the registry as ``2024-05-01 14:03 UTC`` (unchanged if unparsable).

    Parameters
    ----------
    stamp : str or None

    Returns
    -------
    str
    """
    try:
        when = _dt.datetime.fromisoformat(str(stamp))
    except ValueError:
        return str(stamp)
    if when.tzinfo is not None:
        when = when.astimezone(_dt.UTC)
    return when.strftime("%Y-%m-%d %H:%M UTC")


def load_registry(study_root: str | os.PathLike) -> dict[str, Reader]:
    """The invited readers (empty when nobody has been invited yet).

    Raises
    ------
    InvitationError
        If the registry exists but is not valid JSON of the expected shape.
    """
    path = registry_path(study_root)
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
        return {rid: Reader(reader_id=rid, **entry) for rid, entry in raw["readers"].items()}
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InvitationError(f"{path} is not a readable readers registry ({exc!r}); restore it from a "
                              "backup or move it away and invite the readers again") from exc


def _save(study_root: str | os.PathLike, readers: dict[str, Reader]) -> None:
    write_json(registry_path(study_root), {"readers": {
        r.reader_id: {"token_sha256": r.token_sha256, "added_at": r.added_at, "revoked_at": r.revoked_at,
                      "history": r.history}
        for r in sorted(readers.values(), key=lambda r: r.reader_id)}})


def invitation_link(token: str, host: str = "127.0.0.1", port: int = 8866, scheme: str = "http") -> str:
    """The personal link of a reader: ``<scheme>://<host>:<port>/?reader=<token>``."""
    return f"{scheme}://{host}:{port}/?reader={token}"


def _refusal(readers: dict[str, Reader], rid: str, new_token: bool, reinstate: bool) -> str | None:
    """Why ``rid`` cannot be (re-)invited as asked, or None if it can."""
    if rid not in readers:
        if reinstate:
            return (f"reader {rid!r} was never invited, so there is nothing to reinstate; "
                    f"invite them without --reinstate")
        return None
    reader = readers[rid]
    if not reader.active and not reinstate:
        return (f"reader {rid!r} was revoked on {readable_time(reader.revoked_at)}; to let them rate again "
                f"run 'mammo-readers add {rid} --reinstate' (a new link; the revocation stays in the registry), "
                f"or invite them under a new id")
    if reader.active and reinstate:
        return (f"reader {rid!r} is not revoked (invited {readable_time(reader.added_at)}); --reinstate is "
                f"only for revoked readers: use 'mammo-readers add {rid} --new-token' for a new link")
    if reader.active and not new_token:
        return (f"reader {rid!r} already has an invitation (since {readable_time(reader.added_at)}); its link "
                f"was shown only when it was made: run 'mammo-readers add {rid} --new-token' for a new link "
                f"(the old one stops working)")
    return None


def check_add_request(readers: dict[str, Reader], reader_ids: list[str], new_token: bool = False,
                      reinstate: bool = False) -> None:
    """Refuse an ``add`` that cannot be done as a whole (checked before anything is written).

    Parameters
    ----------
    readers : dict
        The registry (:func:`load_registry`).
    reader_ids : list of str
        The ids of one command.
    new_token, reinstate : bool
        As in :func:`add_readers`.

    Raises
    ------
    InvitationError
        If an id is given twice (also when only upper/lower case differs), is not valid
        (:func:`check_new_reader_id`), is revoked without ``reinstate``, is active without
        ``new_token``, or ``reinstate`` names a reader who is not revoked.
    """
    seen: dict[str, str] = {}
    for rid in reader_ids:
        key = rid.lower() if isinstance(rid, str) else rid
        if key in seen:
            also = "" if seen[key] == rid else f" (as {seen[key]!r})"
            raise InvitationError(f"reader id {rid!r} is given twice in this command{also}; "
                                  "give each reader once")
        seen[key] = rid
    for rid in reader_ids:
        check_new_reader_id(rid, list(readers))
        why = _refusal(readers, rid, new_token, reinstate)
        if why:
            raise InvitationError(why)


def add_readers(study_root: str | os.PathLike, reader_ids: list[str], new_token: bool = False,
                reinstate: bool = False) -> dict[str, str]:
    """Invite readers: create each with a fresh token and return ``{reader_id: token}``.

    Parameters
    ----------
    study_root : path
        ``<run_dir>/reader_study``.
    reader_ids : list of str
    new_token : bool
        Give active readers who already exist a new token (the old link stops working).
    reinstate : bool
        Re-activate revoked readers with a new token; the revocation is kept in their history.
        Only revoked readers may be named then.

    Returns
    -------
    dict
        reader id -> token (shown once; only its digest is stored).

    Raises
    ------
    InvitationError
        As :func:`check_add_request` says (an id twice, not valid, already invited, revoked).
        Nothing is written then.
    """
    readers = load_registry(study_root)
    check_add_request(readers, reader_ids, new_token=new_token, reinstate=reinstate)
    out = {}
    for rid in reader_ids:
        token = secrets.token_urlsafe(24)
        now = now_iso("milliseconds")
        old = readers.get(rid)
        if old is None:
            readers[rid] = Reader(rid, token_digest(token), now)
        elif old.active:
            old.token_sha256 = token_digest(token)
            old.history.append({"event": "new_token", "at": now})
        else:
            old.token_sha256 = token_digest(token)
            old.history.append({"event": "reinstated", "at": now, "revoked_at": old.revoked_at})
            old.revoked_at = None
        out[rid] = token
    _save(study_root, readers)
    return out


def revoke_reader(study_root: str | os.PathLike, reader_id: str) -> Reader:
    """Revoke a reader's link (their ratings stay; ``add --reinstate`` re-invites them).

    Revoking a revoked reader keeps the first revocation time.

    Raises
    ------
    InvitationError
        If the reader was never invited.
    """
    readers = load_registry(study_root)
    if reader_id not in readers:
        raise InvitationError(f"reader {reader_id!r} is not invited ({registry_path(study_root)}); "
                              f"invited: {sorted(readers) or 'nobody'}")
    readers[reader_id].revoked_at = readers[reader_id].revoked_at or now_iso("milliseconds")
    _save(study_root, readers)
    return readers[reader_id]


def reader_for_token(study_root: str | os.PathLike, token: str | None) -> str:
    """The reader whose active link holds ``token``.

    Raises
    ------
    InvitationError
        If the token is missing, unknown or revoked (the message is safe to show to the visitor:
        it names no reader).
    """
    if not token:
        raise InvitationError("this page needs your personal link (it ends in ?reader=...); please use the "
                              "link the study coordinator sent you")
    digest = token_digest(token)
    for reader in load_registry(study_root).values():
        if hmac.compare_digest(reader.token_sha256, digest):
            if not reader.active:
                raise InvitationError("this link has been withdrawn by the study coordinator; please ask them "
                                      "for a new one")
            return reader.reader_id
    raise InvitationError("this link is not valid for this study; please check that you copied the whole "
                          "link, or ask the study coordinator for a new one")
