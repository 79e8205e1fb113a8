"""Prefect flows: ordering, retries, caching, concurrency and artifacts over prm_data.pipeline.

Importing this package first points Prefect at a project-local home with
telemetry off and a startup timeout that a 2-core machine can meet.
"""

from flows import prefect_env

prefect_env.configure()
