#!/usr/bin/env bash
# A 119 fire call from report to closure, against a running `linkbus up`: every message and API
# call, in order. See docs/scenario-119.md. Needs curl and python3 (to read JSON).
#
#   target/release/linkbus up --config docs/scenario-119.toml      # in one terminal
#   docs/scenario-119.sh                                           # in another
set -euo pipefail

LINKBUS=${LINKBUS:-target/release/linkbus}
API=${LINKBUS_API:-http://127.0.0.1:8080}
# The linkbus commands below find the embedded nats-server (and their key) in the data folder
# this configuration names; LINKBUS_NATS_URL, when set, names the server's URL instead.
export LINKBUS_CONFIG=${LINKBUS_CONFIG:-docs/scenario-119.toml}
DISPATCHER_KEY=${DISPATCHER_KEY:-scenario-dispatcher-key}
SOURCE_KEY=${SOURCE_KEY:-scenario-source-key}
CALL=$(date +%s)
CASE="cad-119-$CALL"

step() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*" >&2; "$@"; }
api() { # api METHOD PATH KEY [JSON]
  local method=$1 path=$2 key=$3 body=${4:-}
  printf '$ curl -X %s %s%s%s\n' "$method" "$API" "$path" "${body:+ -d '$body'}" >&2
  curl -sS --fail-with-body -X "$method" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    ${body:+--data "$body"} "$API$path"
}
field() { # field KEY… : one value out of the JSON on stdin, e.g. field offers 0 volunteer_id
  python3 -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1:]:
    v = v[int(k)] if isinstance(v, list) else v[k]
print(v)' "$@"
}

step "1. 119 call: a kitchen fire, an elderly resident trapped upstairs (Mission, San Francisco)"
run "$LINKBUS" report --id "$CASE" --source /cad-119 --source-id "$CALL" --system emergency --category fire \
  --priority 2 --lon -122.4194 --lat 37.7599 --address "3250 20th St" \
  --description "kitchen fire, elderly resident trapped on the 2nd floor" --phone 555-0119 \
  --flag persons_trapped --flag elderly_alone

step "2. The dispatcher sees it routed: priority raised to 1, the first-due fire station, volunteers offered"
for _ in $(seq 50); do
  record=$(api GET "/api/cases/$CASE" "$DISPATCHER_KEY" 2>/dev/null) && break || sleep 0.2
done
echo "$record" | field state
echo "$record" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("priority", r["priority"], "departments", r["departments"]); print("\n".join(r["decision"]["explanation"]))'
VOLUNTEER=$(echo "$record" | field offers 0 volunteer_id)

step "3. Fire Station 7 accepts (签收) over NATS: action.sffd-station-7"
run "$LINKBUS" act --department sffd-station-7 --case "$CASE" '{"action":"accept"}'

step "4. The nearest volunteer with first aid accepts the offer: volunteer.$VOLUNTEER.answer"
run "$LINKBUS" answer --volunteer "$VOLUNTEER" --case "$CASE" --accept

step "5. The station reports progress, then resolves"
run "$LINKBUS" act --department sffd-station-7 --case "$CASE" '{"action":"progress","note":"engine 7 on scene, resident rescued"}'
run "$LINKBUS" act --department sffd-station-7 --case "$CASE" '{"action":"resolve","note":"fire out, resident treated by paramedics"}'

step "6. The reporter follows up and rates it, through the 119 app (its source-system key)"
api GET "/api/requests/$CALL" "$SOURCE_KEY" | field state
api POST "/api/requests/$CALL/rating" "$SOURCE_KEY" '{"score":5,"solved":true,"comment":"came in minutes"}' | field state

step "7. The station closes the case"
run "$LINKBUS" act --department sffd-station-7 --case "$CASE" '{"action":"close","note":"report filed"}'

step "8. The whole timeline, as the dispatcher sees it"
api GET "/api/cases/$CASE" "$DISPATCHER_KEY" | python3 -c '
import json, sys
r = json.load(sys.stdin)
for e in r["timeline"]:
    who = e["actor"]["kind"] + ":" + e["actor"]["id"]
    print(e["at"], e["event"].ljust(22), who.ljust(32), e.get("note", ""))
print("final state:", r["state"])'
