#!/usr/bin/env bash
# Make docs/img/mlflow-compare.png: two small lora_small runs (learning rate 1e-3 and 3e-4) in a fresh
# store, MLflow's own UI on it, and a headless Chromium (driven by docs/mlflow_screenshot.py) photographing
# the experiment's chart view with both runs compared. Needs `chromium` (Debian: apt-get install -y chromium). Run from the repository root:
#
#     bash docs/mlflow_screenshot.sh            # about 3 minutes on a 2-core CPU
#
set -euo pipefail
root=$(pwd)
work=${WORK:-$(mktemp -d)}  # WORK=dir keeps the runs (and reuses them on the next call)
port=${PORT:-5077}
python=${PYTHON:-python}
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true
small=(dataset.n_train=320 dataset.n_validation=48 dataset.n_test=96 trainer.batch_size=16
       trainer.log_every=2 trainer.eval_every=4)
cd "$work"
if [ ! -f outputs/mlflow.db ]; then
  for rate in 1e-3 3e-4; do
    "$python" -m modelops +recipe=lora_small trainer.learning_rate=$rate "${small[@]}" > "run-$rate.log" 2>&1
  done
fi
"$python" -m mlflow server --host 127.0.0.1 --port "$port" --workers 1 \
  --backend-store-uri "sqlite:///$work/outputs/mlflow.db" > server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; [ -n "${WORK:-}" ] || rm -rf "$work"' EXIT
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 1; done
experiment=$(curl -sf "http://127.0.0.1:$port/api/2.0/mlflow/experiments/get-by-name?experiment_name=lora_small" |
  "$python" -c 'import json, sys; print(json.load(sys.stdin)["experiment"]["experiment_id"])')
# The experiment's runs compared as charts: the loss and accuracy curves overlaid, final accuracies as bars.
url="http://127.0.0.1:$port/#/experiments/$experiment/runs?compareRunsMode=CHART"
"$python" "$root/docs/mlflow_screenshot.py" "$url" "$root/docs/img/mlflow-compare.png" --charts "loss|accuracy"
ls -l "$root/docs/img/mlflow-compare.png"
