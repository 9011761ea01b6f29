"""The core layer: settings, atomic writes and histories, the SQL engines, the data contract and
the table names every stage shares, the Pushgateway client, and the hiding of passwords in what
is shown. It imports nothing of ours."""
