#!/usr/bin/env bash
# The README's five-minute walk-through as one script. Start the server first, in another
# terminal, with a known token:
#   TRIGGERD_API_TOKEN=dev-token cargo run --release -p triggerd-server -- serve
# then run:  bash examples/quickstart/walkthrough.sh
set -euo pipefail
cd "$(dirname "$0")"
BASE=${TRIGGERD_URL:-http://127.0.0.1:8080}
API=$BASE/api/v1
AUTH="Authorization: Bearer ${TRIGGERD_API_TOKEN:-dev-token}"
JSON="Content-Type: application/json"
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

echo "1. store the workflow"
curl -fsS -X PUT "$API/workflows/order-created" -H "$AUTH" -H "$JSON" --data @workflow.json | field "['version']"

echo "2. deploy it"
DEP=$(curl -fsS -X POST "$API/workflows/order-created/deployments" -H "$AUTH" -H "$JSON" \
  -d "{\"name\": \"production-$(date +%s)\"}" | field "['id']")
echo "   deployment $DEP"

echo "3. create a webhook trigger with a secret"
TRIGGER=$(curl -fsS -X POST "$API/deployments/$DEP/triggers" -H "$AUTH" -H "$JSON" --data @trigger.json)
URL=$(echo "$TRIGGER" | field "['url']")
echo "   url $URL"

echo "4. send a signed webhook"
SECRET=change-me-to-a-long-random-string
BODY=$(cat body.json)
SIG=$(printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.* //')
RUN=$(curl -fsS -X POST "$URL?currency=USD" -H "$JSON" -H "X-Shop-Event: order.created" \
  -H "X-Webhook-Signature: sha256=$SIG" -d "$BODY" | field "['run_id']")
echo "   run $RUN"

echo "5. read the run"
for _ in $(seq 1 50); do
  STATUS=$(curl -fsS "$API/runs/$RUN" -H "$AUTH" | field "['status']")
  [ "$STATUS" = completed ] && break
  sleep 0.1
done
curl -fsS "$API/runs/$RUN" -H "$AUTH" | python3 -m json.tool
