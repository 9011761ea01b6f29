"""The core layer: settings, atomic writes and histories, the SQL engines, the data contract and
the table names every stage shares, and the Pushgateway client. It imports nothing of ours."""
