"""The operator API: the spec's /api/infrastructure/ endpoints over PostgreSQL (as the caller,
under row-level security) and Alertmanager."""

NAMESPACE = "api"
