"""Machinery the benchmarks share: the counting proxy, the anchors' servers and clients, sandbox nodes."""
