"""Summaries of a membership manifest for ``hashfed manifest verify`` and ``show``.

Kept apart from the commands so the summary (a stable JSON shape that scripts parse) can be
read and tested on its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from federation.cli.output import print_fields, print_table
from federation.core.manifest import Manifest, SignedManifest, manifest_hash


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def summary(signed: SignedManifest, authority: Manifest | None, verified: bool) -> dict[str, Any]:
    """The JSON summary ``verify`` and ``show`` print (``authority`` None = own stewards)."""
    m = signed.manifest
    trusted = authority or m
    stewards = trusted.steward_keys()
    out: dict[str, Any] = {
        "federation": m.federation,
        "version": m.version,
        "issued_at": m.issued_at,
        "hash": manifest_hash(m),
        "members": [
            {
                "id": x.id,
                "name": x.name,
                "roles": [str(r) for r in x.roles],
                "status": x.status,
                "endpoint": x.endpoint,
                "log_origin": x.log_origin,
                **({"suspended_at": x.suspended_at} if x.suspended_at is not None else {}),
                **({"suspended_size": x.suspended_size} if x.suspended_size is not None else {}),
            }
            for x in m.members
        ],
        "policy": m.policy.model_dump(mode="json"),
        "stewards": len(m.stewards),
        "steward_quorum": m.steward_quorum,
        "signatures": len(signed.signatures),
        "steward_signatures": sum(s.key_id in stewards for s in signed.signatures),
        "quorum": trusted.steward_quorum,
        "verified_against": "self" if authority is None else f"version {authority.version}",
        "verified": verified,
    }
    return out


def print_summary(info: dict[str, Any]) -> None:
    """Human form of :func:`summary`."""
    against = info["verified_against"]
    if against == "self":
        against = "its own stewards (genesis: compare the hash with the pinned one)"
    else:
        against = f"the stewards of {against}"
    status = "valid" if info["verified"] else "not verified (signatures not checked)"
    policy = " ".join(f"{k}={v}" for k, v in sorted(info["policy"].items()))
    print_fields(
        [
            ("federation", info["federation"]),
            ("version", f"{info['version']} (issued {_when(info['issued_at'])})"),
            ("hash", info["hash"]),
            ("policy", policy),
            ("stewards", f"{info['stewards']}, quorum {info['steward_quorum']} for the next"),
            (
                "signatures",
                f"{info['steward_signatures']} of quorum {info['quorum']} by {against};"
                f" {info['signatures']} present",
            ),
            ("status", status),
        ]
    )
    if info["members"]:
        print()
        rows = [
            (x["id"], x["name"], ",".join(x["roles"]), x["status"], x["endpoint"])
            for x in info["members"]
        ]
        print_table(rows, ("ID", "NAME", "ROLES", "STATUS", "ENDPOINT"))
    suspensions = [(x["id"], _suspension(x)) for x in info["members"] if x["status"] == "suspended"]
    if suspensions:
        print()
        print_fields([(f"suspended {who}", rule) for who, rule in suspensions])


def _suspension(member: dict[str, Any]) -> str:
    """What a member's suspension refuses, in words."""
    rules = []
    if "suspended_size" in member:
        rules.append(f"entries at log index >= {member['suspended_size']}")
    if "suspended_at" in member:
        at = member["suspended_at"]
        rules.append(f"entries created at or after {_when(at)} ({at})")
    return "; ".join(rules)
