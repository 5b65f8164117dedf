"""`crossmargin audit verify [ID | --all]`: recompute and walk the hash chains (METHOD.md §10).

For each snapshot checked: its id is the sha256 of the stored document, the document is
canonical, the row agrees with it, its config is stored and hashes to the recorded
config hash, every blob it names (version "2") is stored and hashes to its name, and
replaying its inputs gives byte-identical parameters and outputs.
For each account: heights run 0..n-1, every `prev` is the snapshot before it (first:
the genesis id), and the head record names the newest snapshot. Anything else is
reported as tampering and the command exits 1. With `--all`, every stored blob must
also hash to its name; a blob no snapshot names is counted (harmless: content-addressed,
nothing can refer to it by mistake) but a changed one is a finding, referenced or not.
With `--offline` (METHOD.md §13), every balance of a chain in verified mode is also
proven again from the header and proofs the snapshot stores (crossmargin/pipeline/
proofs.py), with no node: a stored verdict the stored proofs do not give is a finding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from api.store import Store, Summary
from crossmargin.core.canonical import canonical, digest
from crossmargin.core.config import Config, config_hash
from crossmargin.core.errors import SnapshotError
from crossmargin.pipeline.proofs import reprove
from crossmargin.pipeline.snapshot import GENESIS
from crossmargin.pipeline.stored import blob_refs, expand, replay, replay_config


@dataclass(frozen=True, slots=True)
class Finding:
    account: str
    snapshot_id: str | None
    problem: str

    def __str__(self) -> str:
        where = self.snapshot_id or "(chain)"
        return f"TAMPERED {where} ({self.account}): {self.problem}"


@dataclass
class AuditReport:
    snapshots: int = 0
    replayed: int = 0
    accounts: int = 0
    blobs: int = 0  # stored blobs checked (--all)
    unreferenced: int = 0  # of those, named by no snapshot
    reproven: int = 0  # balances proven again from stored proofs (--offline)
    positions: int = 0  # balances of verified chains looked at (--offline)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


class Auditor:
    def __init__(self, store: Store, *, offline: bool = False) -> None:
        self.store = store
        self.offline = offline  # re-prove verified balances (§13)
        self.reproof: tuple[int, int] = (0, 0)  # (proven, positions) of the last document
        self._configs: dict[str, Config | str] = {}
        self._blobs: dict[str, str] = {}  # fetched so far (checked by `expand`)
        self.referenced: set[str] = set()

    def _config(self, hash_: str) -> Config | str:
        """The stored config with this hash, or why it cannot be used."""
        if hash_ not in self._configs:
            text = self.store.get_config(hash_)
            if text is None:
                self._configs[hash_] = f"config {hash_} is not stored"
            else:
                try:
                    cfg = replay_config(text)
                except Exception as exc:  # stored bytes are untrusted input here
                    self._configs[hash_] = f"stored config {hash_} does not load: {exc}"
                else:
                    ok = config_hash(cfg) == hash_
                    self._configs[hash_] = cfg if ok else f"stored config {hash_} is altered"
        return self._configs[hash_]

    def check_document(self, row: Summary, text: str, *, replay_it: bool) -> list[str]:
        problems: list[str] = []
        if digest(text) != row.id:
            problems.append("id is not the sha256 of the stored document")
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            return [*problems, "stored document is not a JSON object"]
        try:
            if canonical(doc) != text:
                problems.append("stored document is not in canonical form")
        except Exception:
            problems.append("stored document holds values a snapshot cannot")
        request: dict[str, Any] = doc["request"] if isinstance(doc.get("request"), dict) else {}
        for name, stored, documented in (
            ("account", row.account, doc.get("account")),
            ("kind", row.kind, doc.get("kind")),
            ("prev_id", row.prev_id, doc.get("prev")),
            ("target", row.target, request.get("target_chain")),
            ("asset", row.asset, request.get("asset")),
        ):
            if stored != documented:
                problems.append(f"row's {name} disagrees with its document")
        try:
            full = expand(doc, self._fetch(doc))
        except SnapshotError as exc:
            return [*problems, f"document's blobs: {exc}"]
        if replay_it:
            problems += self._replay(full)
            if self.offline:
                problems += self._reprove(full)
        return problems

    def _reprove(self, doc: dict[str, Any]) -> list[str]:
        """§13: every stored verdict derived again from the stored header and proofs."""
        try:
            cfg = self._config(str(doc["inputs"]["parameters"]["config_hash"]))
        except (KeyError, TypeError):
            return []  # `_replay` reports it
        if isinstance(cfg, str):
            return []
        try:
            result = reprove(cfg, doc)
        except Exception as exc:  # tampered proofs may break decoding anywhere
            return [f"re-proof failed: {type(exc).__name__}: {exc}"]
        self.reproof = (self.reproof[0] + result.proven, self.reproof[1] + result.positions)
        return result.problems

    def _fetch(self, doc: dict[str, Any]) -> dict[str, str]:
        """The blobs a document names, from the store (each fetched once per audit)."""
        try:
            refs = blob_refs(doc)
        except SnapshotError:
            return {}  # `expand` says what is wrong
        self.referenced.update(refs)
        missing = [r for r in refs if r not in self._blobs]
        if missing:
            self._blobs.update(self.store.blobs(missing))
        return {r: self._blobs[r] for r in refs if r in self._blobs}

    def check_blobs(self, report: AuditReport) -> None:
        """Every stored blob hashes to its name; count those no snapshot names."""
        for sha, text in self.store.all_blobs():
            report.blobs += 1
            report.unreferenced += sha not in self.referenced
            if not text.isascii() or digest(text) != sha:
                report.findings.append(
                    Finding("(blobs)", sha, "stored blob does not hash to its name (changed)")
                )

    def _replay(self, doc: dict[str, Any]) -> list[str]:
        try:
            params = doc["inputs"]["parameters"]
            cfg = self._config(str(params["config_hash"]))
        except (KeyError, TypeError):
            return ["document has no inputs.parameters.config_hash"]
        if isinstance(cfg, str):
            return [cfg]
        try:
            got_params, got_outputs = replay(cfg, doc)
        except Exception as exc:  # tampered inputs may break the computation anywhere
            return [f"replay failed: {type(exc).__name__}: {exc}"]
        problems = []
        if got_params != canonical(params):
            problems.append("recorded parameters differ from those of the stored config")
        if got_outputs != canonical(doc.get("outputs")):
            problems.append("replayed outputs differ from the stored outputs")
        return problems

    def check_account(self, account: str, replay_ids: set[str] | None, report: AuditReport) -> None:
        """Walk one account's chain; replay all its snapshots, or only `replay_ids`."""
        rows, head = self.store.chain_rows(account)
        report.accounts += 1

        def find(sid: str | None, problem: str) -> None:
            report.findings.append(Finding(account, sid, problem))

        ids = {r.id for r, _ in rows}
        prev, height = GENESIS, 0
        for row, text in rows:
            report.snapshots += 1
            replay_it = replay_ids is None or row.id in replay_ids
            report.replayed += replay_it
            for problem in self.check_document(row, text, replay_it=replay_it):
                find(row.id, problem)
            if row.height != height:
                find(row.id, f"height {row.height} where {height} was expected")
            if row.prev_id != prev:
                if row.prev_id != GENESIS and row.prev_id not in ids:
                    find(row.id, f"previous snapshot {row.prev_id} is missing (deleted link)")
                else:
                    find(row.id, f"links to {row.prev_id}, not to the snapshot before it")
            prev, height = row.id, row.height + 1
        if head is None:
            if rows:
                find(None, "no head record for a stored chain")
        elif not rows or head != (rows[-1][0].id, rows[-1][0].height):
            where = "a missing snapshot" if head[0] not in ids else "an older snapshot"
            find(head[0], f"head record points to {where} (newest snapshots deleted?)")


def verify(
    store: Store, snapshot_id: str | None = None, *, offline: bool = False
) -> AuditReport | None:
    """Audit one snapshot (and its account's chain) or, with no id, everything; with
    `offline`, re-prove verified balances too. None if the id is not stored."""
    auditor = Auditor(store, offline=offline)
    report = AuditReport()
    if snapshot_id is not None:
        found = store.get(snapshot_id)
        if found is None:
            return None
        auditor.check_account(found[0].account, {snapshot_id}, report)
    else:
        for account in store.accounts():
            auditor.check_account(account, None, report)
        auditor.check_blobs(report)
    report.reproven, report.positions = auditor.reproof
    return report


def run_verify(url: str, snapshot_id: str | None, *, offline: bool = False) -> int:
    """The CLI: print findings and a summary; exit status 1 on any finding."""
    store = Store.open(url, migrate=False)  # an audit reads; it never creates tables
    try:
        report = verify(store, snapshot_id, offline=offline)
    finally:
        store.close()
    if report is None:
        print(f"crossmargin audit: no snapshot {snapshot_id}")
        return 1
    for f in report.findings:
        print(f)
    if snapshot_id is None:
        print(
            f"crossmargin audit: {report.blobs} blobs checked, {report.unreferenced} unreferenced"
        )
    if offline:
        print(
            f"crossmargin audit: {report.reproven} of {report.positions} verified-chain "
            "balances proven again from stored proofs (no node)"
        )
    verdict = "OK" if report.ok else f"FAILED: {len(report.findings)} problem(s)"
    print(
        f"crossmargin audit: {report.snapshots} snapshots in {report.accounts} account(s) "
        f"checked, {report.replayed} replayed: {verdict}"
    )
    return 0 if report.ok else 1
