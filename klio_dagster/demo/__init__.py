"""``klio-dagster demo``: a synthetic catalogue, ingested and computed end to end."""
