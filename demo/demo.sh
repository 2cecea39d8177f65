#!/usr/bin/env bash
# The cloudchain demo: start the local emulator, then set up, save, read, list, show the raw
# DynamoDB item (ciphertext only) and delete, all through the real `cchain`. Run it with `make demo`.
set -euo pipefail

work=$(mktemp -d)
emulator=""
cleanup() {
    if [ -n "$emulator" ]; then
        kill "$emulator" 2>/dev/null || true
        wait "$emulator" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Keep whatever AWS or cloudchain settings this shell has out of the demo.
unset AWS_PROFILE AWS_DEFAULT_PROFILE CLOUDCHAIN_CONFIG CLOUDCHAIN_KMS_ENDPOINT_URL
export HOME="$work"

echo "== starting the local emulator (cchain-local --port 0)"
cchain-local --port 0 >"$work/settings" 2>"$work/emulator.log" &
emulator=$!
for _ in $(seq 1 150); do
    grep -q '^export CLOUDCHAIN_ENDPOINT_URL=' "$work/settings" 2>/dev/null && break
    kill -0 "$emulator" 2>/dev/null || { cat "$work/emulator.log" >&2; exit 1; }
    sleep 0.1
done
grep -q '^export CLOUDCHAIN_ENDPOINT_URL=' "$work/settings" || { echo "emulator did not start" >&2; exit 1; }
eval "$(grep '^export ' "$work/settings")"
cat "$work/emulator.log"
echo "   endpoint: $CLOUDCHAIN_ENDPOINT_URL  table: $CLOUDCHAIN_TABLE  key: $CLOUDCHAIN_KEY_ALIAS"

show() { echo; echo "\$ $*"; }

show cchain --setup
cchain --setup

show "printf '%s\n' 'correct horse battery staple' | cchain -u alice -e billing --save -"
printf '%s\n' 'correct horse battery staple' | cchain -u alice -e billing --save -

show "printf '%s\n' 'pa\$\$ w0rd' | cchain -u bob -e billing --save"
printf '%s\n' 'pa$$ w0rd' | cchain -u bob -e billing --save

show cchain -u alice -e billing --read
cchain -u alice -e billing --read

show cchain --list
cchain --list

echo
echo "== the raw DynamoDB item: only ciphertext is stored"
python - <<'PY'
import json, os
import boto3

client = boto3.client(
    "dynamodb",
    endpoint_url=os.environ["CLOUDCHAIN_ENDPOINT_URL"],
    region_name=os.environ["CLOUDCHAIN_REGION"],
)
item = client.get_item(
    TableName=os.environ["CLOUDCHAIN_TABLE"],
    Key={"Service": {"S": "billing"}, "Username": {"S": "alice"}},
)["Item"]
print(json.dumps(item, indent=2))
assert "correct horse" not in json.dumps(item)
PY

show cchain -u alice -e billing --delete
cchain -u alice -e billing --delete

show cchain -u alice -e billing --read
status=0
cchain -u alice -e billing --read || status=$?
echo "(exit status $status: 3 means not found)"
[ "$status" -eq 3 ]

echo
echo "== demo finished; stopping the emulator"
