"""The ``churn`` command line as a Spark application: the file spark-submit runs.

spark-submit (and the Spark operator's ``mainApplicationFile``) starts a Python driver
from a ``.py`` file, not from a console script such as ``churn``. This file stands in
for it: its arguments are the CLI's, so

    spark-submit --master k8s://https://HOST:6443 ... local:///opt/churn/churn_job.py features build

runs ``churn features build`` in the driver, exactly as on one machine. Launched by
spark-submit, the stages take the cluster's session (``core.spark_engine``) and
their Spark SQL runs on the executors; with ``CHURN_ENGINE=spark`` unset they would run
DuckDB in the driver pod. The churn-spark image copies it to /opt/churn/churn_job.py.
"""

from churn.cli import app

if __name__ == "__main__":
    app(prog_name="churn")
