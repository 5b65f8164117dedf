"""The transparency log of snapshot ids (METHOD.md §10): RFC 9162 Merkle hashing
(`merkle`), signed tree heads (`heads`) and the audit against a kept tree head (`audit`)."""
