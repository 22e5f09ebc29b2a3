"""The Dagster glue: the definitions factory, the feature step, resources, partitions, runs."""
