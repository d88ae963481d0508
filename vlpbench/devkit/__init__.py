"""For component and plugin authors: the `new-plugin` scaffold, the conformance kit (`check-plugin`),
the two-process check, test helpers and the mining-quality measurement."""
