"""`crossmargin audit verify --tree-head FILE`: does the store still hold, unchanged and
in order, every snapshot a kept signed tree head covers (METHOD.md §10)?

Nothing the store keeps about the tree is trusted: the root of the first n leaves is
recomputed from the stored documents themselves (each must hash to the id its leaf
names), and must equal the signed root; the signature must verify with the pinned
public key. A changed byte, a deleted or reordered snapshot, a deleted account, a
truncated tail, or a history rewritten with every hash recomputed each changes that
root or leaves a leaf without its document. A tree head larger than the store's log is
reported as such: the store lost snapshots, or the head is not of this store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from api.store import Store
from api.store.tlog import leaf_of
from api.tlog.heads import SignedTreeHead, TreeHeadError, signature_ok
from api.tlog.merkle import EMPTY_ROOT, CompactRange
from crossmargin.core.canonical import digest

BATCH = 2000  # leaves (and their documents) read per query


@dataclass
class HeadReport:
    tree_size: int
    store_size: int = 0
    checked: int = 0
    findings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def verify_head(store: Store, sth: SignedTreeHead, public_key: bytes) -> HeadReport:
    n = sth.head.tree_size
    report = HeadReport(n, store.log.size() if store.has_log else 0)
    if not signature_ok(public_key, sth):
        report.findings.append("the tree head's signature does not verify with the public key")
    if n > report.store_size:
        report.findings.append(
            f"the tree head is newer than the store: it covers {n} snapshots, the store's "
            f"log holds {report.store_size} (snapshots lost, or a head of another store)"
        )
        return report
    tree = CompactRange()
    for begin in range(0, n, BATCH):
        leaves = list(store.log.leaves(begin, min(n, begin + BATCH)))
        docs = store.log.documents([sid for _, sid in leaves])
        for index, sid in leaves:
            if index != tree.size:
                report.findings.append(f"leaves {tree.size}..{index - 1} are missing")
                break
            text = docs.get(sid)
            if text is None:
                report.findings.append(f"leaf {index}: snapshot {sid} is not stored (deleted)")
            elif not text.isascii() or digest(text) != sid:
                report.findings.append(f"leaf {index}: snapshot {sid}'s document was changed")
            tree.push(leaf_of(sid))
            report.checked += 1
        if tree.size != min(n, begin + BATCH):
            report.findings.append(f"the log's leaves stop at {tree.size} of {n}")
            return report
    if (tree.root() if n else EMPTY_ROOT) != sth.head.root_hash:
        report.findings.append(
            f"the first {n} leaves do not hash to the signed root: the history the tree "
            "head covers was rewritten, reordered or cut"
        )
    return report


def run_verify_head(url: str, head_text: str, public_key: bytes) -> int:
    """The CLI: findings, then one summary line; exit status 1 on any finding."""
    try:
        sth = SignedTreeHead.from_json(json.loads(head_text))
    except ValueError as exc:
        raise TreeHeadError(f"the tree head file is not JSON: {exc}") from exc
    store = Store.open(url, migrate=False)  # an audit reads; it never creates tables
    try:
        report = verify_head(store, sth, public_key)
    finally:
        store.close()
    for finding in report.findings:
        print(f"TAMPERED (log): {finding}")
    verdict = "OK" if report.ok else f"FAILED: {len(report.findings)} problem(s)"
    print(
        f"crossmargin audit: tree head of {sth.head.tree_size} snapshot(s), root "
        f"{sth.head.root_hash.hex()[:16]}..., against a log of {report.store_size}: "
        f"{report.checked} checked: {verdict}"
    )
    return 0 if report.ok else 1
