#!/usr/bin/env bash
# The README's five-minute walk-through as one script. Start the server first, in another
# terminal, with a known token:
#   TRIGGERD_API_TOKEN=dev-token triggerd serve
# then run:  bash examples/quickstart/walkthrough.sh
# (TRIGGERD_URL and TRIGGERD_API_TOKEN point it at another server; needs curl, openssl, python3.)
set -euo pipefail
cd "$(dirname "$0")"
BASE=${TRIGGERD_URL:-http://127.0.0.1:8080}
API=$BASE/api/v1
TOKEN=${TRIGGERD_API_TOKEN:-dev-token}
AUTH="Authorization: Bearer $TOKEN"
JSON="Content-Type: application/json"

fail() {
  echo "walkthrough: $*" >&2
  exit 1
}

# call METHOD URL [curl options...]: prints the answer's body; any answer but a 2xx ends the
# script with the server's error message (and what to check), never a traceback.
call() {
  local method=$1 url=$2 body status message hint=""
  shift 2
  body=$(mktemp)
  if ! status=$(curl -sS -o "$body" -w '%{http_code}' -X "$method" "$url" "$@"); then
    rm -f "$body"
    fail "cannot reach triggerd at $BASE: is the server running? (TRIGGERD_URL sets another address)"
  fi
  if [ "${status:0:1}" != 2 ]; then
    message=$(python3 -c '
import json, sys
text = open(sys.argv[1], errors="replace").read()
try:
    answer = json.loads(text)
    print("%s (%s)" % (answer.get("error"), answer.get("code")))
except ValueError:
    print(text[:200] or "(empty answer)")
' "$body")
    rm -f "$body"
    if [ "$status" = 401 ]; then
      hint=". Is TRIGGERD_API_TOKEN the server's admin token? (the server prints it on its first start; \`triggerd token reset\` makes a new one)"
    fi
    fail "$method $url answered $status: $message$hint"
  fi
  cat "$body"
  rm -f "$body"
}

# field NAME: the top-level field NAME of the JSON on stdin.
field() {
  python3 -c '
import json, sys
try:
    print(json.load(sys.stdin)[sys.argv[1]])
except (ValueError, KeyError, TypeError):
    sys.exit("walkthrough: the answer has no %r" % sys.argv[1])
' "$1"
}

echo "1. store the workflow"
STORED=$(call PUT "$API/workflows/order-created" -H "$AUTH" -H "$JSON" --data @workflow.json)
echo "   version $(field version <<<"$STORED")"

echo "2. deploy it"
DEPLOYMENT=$(call POST "$API/workflows/order-created/deployments" -H "$AUTH" -H "$JSON" \
  -d "{\"name\": \"production-$(date +%s)-$$\"}")
DEP=$(field id <<<"$DEPLOYMENT")
echo "   deployment $DEP"

echo "3. create a webhook trigger with a secret"
TRIGGER=$(call POST "$API/deployments/$DEP/triggers" -H "$AUTH" -H "$JSON" --data @trigger.json)
URL=$(field url <<<"$TRIGGER")
echo "   url $URL"

echo "4. send a signed webhook"
SECRET=change-me-to-a-long-random-string
BODY=$(cat body.json)
SIG=$(printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.* //')
ACCEPTED=$(call POST "$URL?currency=USD" -H "$JSON" -H "X-Shop-Event: order.created" \
  -H "X-Webhook-Signature: sha256=$SIG" -d "$BODY")
RUN=$(field run_id <<<"$ACCEPTED")
echo "   run $RUN"

echo "5. read the run"
for _ in $(seq 1 50); do
  STATUS=$(field status <<<"$(call GET "$API/runs/$RUN" -H "$AUTH")")
  [ "$STATUS" = completed ] && break
  sleep 0.1
done
call GET "$API/runs/$RUN" -H "$AUTH" | python3 -m json.tool
