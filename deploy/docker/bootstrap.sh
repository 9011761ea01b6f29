#!/usr/bin/env bash
# First start of a stack (compose's one-shot `bootstrap` service; `churn-bootstrap` in the
# churn-ml image): data → validate → prepare → features build → feast apply → train →
# promote → materialize, so the API has a model to serve and features to read.
#
#   CHURN_BOOTSTRAP_DATA   a directory (inside the container) holding users.parquet|csv and
#                          events.parquet|csv: your portal's data.
#   CHURN_SOURCE           else: the portal's database or landing folder, read whole the
#                          first time (the backfill). Neither: demo data.
#   CHURN_BOOTSTRAP_USERS  demo users (default 2000)
#   CHURN_BOOTSTRAP_DAYS   demo days of history, ending yesterday (default 120)
#
# Once a production model exists (a restarted stack, its volumes kept), it changes no data
# and no model: it re-applies the Feast definitions and reloads Redis, nothing else.
set -euo pipefail

say() { printf 'bootstrap: %s\n' "$*" >&2; }

# The file of that table in the import directory, Parquet preferred; empty if none.
input_file() {
    local dir="$1" table="$2" ext
    for ext in parquet csv; do
        if [[ -f "$dir/$table.$ext" ]]; then
            printf '%s\n' "$dir/$table.$ext"
            return
        fi
    done
}

# The production version, or nothing before the first promotion. A failure here stops the
# script (set -e on the assignment below): it must never be mistaken for "no model yet".
production_version() {
    python -c 'from core.settings import get_settings
from training.registry import production
print(production(get_settings().models_dir) or "")'
}

version="$(production_version)"
if [[ -n "$version" ]]; then
    say "production model $version exists: re-applying Feast definitions and reloading Redis only"
    churn features apply
    churn features materialize
    exit 0
fi

data="${CHURN_BOOTSTRAP_DATA:-}"
if [[ -n "$data" ]]; then
    users="$(input_file "$data" users)"
    events="$(input_file "$data" events)"
    if [[ -z "$users" || -z "$events" ]]; then
        say "CHURN_BOOTSTRAP_DATA=$data needs users.parquet|csv and events.parquet|csv; it holds:"
        ls -la "$data" >&2 || true
        exit 1
    fi
    say "ingesting $users and $events"
    churn data ingest --users-file "$users" --events-file "$events"
elif [[ -n "${CHURN_SOURCE:-}" ]]; then
    say "backfilling from CHURN_SOURCE"
    churn data ingest
else
    say "no CHURN_BOOTSTRAP_DATA: generating demo data"
    churn data generate --users "${CHURN_BOOTSTRAP_USERS:-2000}" --days "${CHURN_BOOTSTRAP_DAYS:-120}"
fi

churn data validate
churn data prepare
churn features build
churn features apply
churn train
churn promote || {
    code=$?
    say "no model promoted (exit $code, reasons above): the API would have nothing to serve."
    say "to serve a candidate anyway: docker compose run --rm bootstrap churn promote --force" \
        "--version VERSION --reason first-model; then docker compose up -d again"
    exit "$code"
}
churn features materialize
say "done: a production model is promoted and the online store is loaded"
