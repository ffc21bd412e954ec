"""Apache Beam pipelines: moderation (text shards in, labeled Parquet out) and evaluation."""
