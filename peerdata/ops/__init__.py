"""Operations: metrics, health checks (doctor), service integration, the dashboard.

Rule: this package hooks into the node only by reading: the `status` record (what
`peerdata status --format json` shows), the services' `statistics()` and the store. It never
changes what a node does.
"""
