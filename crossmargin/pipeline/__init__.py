"""read (§2) -> value (§3-§4) -> figures (§5-§9) -> report -> snapshot (§10); no I/O
of its own beyond the chain readers it is handed."""
