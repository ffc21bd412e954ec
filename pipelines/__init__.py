"""The jobs: moderate (text shards in, labeled Parquet out), evaluate, report and adapt.

Their parts live in packages: ``sources``, ``model`` and ``sinks`` (the Beam transforms), ``reviews``
(reviewed samples) and ``reporting`` (the run report).
"""

from pipelines import quiet

# Before any job module imports Beam, which logs the first of its harmless warnings at import.
quiet.install()
