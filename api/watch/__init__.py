"""Watching accounts (METHOD.md §14): subscriptions, the block follower that recomputes
what may have changed, threshold alerts stored in an outbox, and signed webhooks."""
