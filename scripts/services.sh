#!/usr/bin/env bash
# Installs (when missing) and starts the local services osprey's integration tests talk to,
# all on loopback, and exports the variables that point the tests at them. Source it:
#   . scripts/services.sh
#
#   redis-server   127.0.0.1:6379  (Debian package; started here when none answers)
#   kinesis-local  127.0.0.1:4568  (npm; kinesis-mock, plain HTTP)      OSPREY_KINESIS_ENDPOINT
#   moto server    127.0.0.1:5010  (PyPI moto[server]; S3 and DynamoDB) OSPREY_S3_ENDPOINT
#
# No Docker: every service is a plain process, left running for the next test run.
# Installs go to $OSPREY_SERVICES_DIR (default /var/cache/osprey-services).

OSPREY_SERVICES_DIR="${OSPREY_SERVICES_DIR:-/var/cache/osprey-services}"
mkdir -p "$OSPREY_SERVICES_DIR"

KINESIS_LOCAL_VERSION=0.6.2
MOTO_VERSION=5.2.5

# True when something accepts TCP connections on 127.0.0.1:$1 (bash's /dev/tcp).
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits until 127.0.0.1:$1 accepts connections, up to $2 seconds.
wait_port() {
  local i
  for ((i = 0; i < ${2:-30} * 10; i++)); do
    port_open "$1" && return 0
    sleep 0.1
  done
  echo "services.sh: nothing answers on 127.0.0.1:$1 after ${2:-30}s" >&2
  return 1
}

start_redis() {
  export OSPREY_REDIS_URL="${OSPREY_REDIS_URL:-redis://127.0.0.1:6379}"
  port_open 6379 && return 0
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$OSPREY_SERVICES_DIR" --logfile "$OSPREY_SERVICES_DIR/redis.log"
  wait_port 6379 20
}

start_kinesis() {
  export OSPREY_KINESIS_ENDPOINT="${OSPREY_KINESIS_ENDPOINT:-http://127.0.0.1:4568}"
  port_open 4568 && return 0
  local dir="$OSPREY_SERVICES_DIR/node/node_modules/kinesis-local"
  if [ ! -f "$dir/main.js" ]; then
    command -v npm >/dev/null || { echo "services.sh: npm is needed for kinesis-local" >&2; return 1; }
    npm install --no-audit --no-fund --silent --prefix "$OSPREY_SERVICES_DIR/node" \
      "kinesis-local@$KINESIS_LOCAL_VERSION" >&2
  fi
  # kinesis-mock reads its TLS certificate (server.json) from the working directory.
  (cd "$dir" && KINESIS_MOCK_PLAIN_PORT=4568 KINESIS_MOCK_TLS_PORT=4567 \
    CREATE_STREAM_DURATION=100ms DELETE_STREAM_DURATION=100ms \
    SPLIT_SHARD_DURATION=100ms MERGE_SHARDS_DURATION=100ms UPDATE_SHARD_COUNT_DURATION=100ms \
    REGISTER_STREAM_CONSUMER_DURATION=100ms DEREGISTER_STREAM_CONSUMER_DURATION=100ms \
    nohup node main.js >"$OSPREY_SERVICES_DIR/kinesis-local.log" 2>&1 &)
  wait_port 4568 60
}

start_moto() {
  export OSPREY_S3_ENDPOINT="${OSPREY_S3_ENDPOINT:-http://127.0.0.1:5010}"
  port_open 5010 && return 0
  local venv="$OSPREY_SERVICES_DIR/venv"
  if [ ! -x "$venv/bin/moto_server" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "moto[server]==$MOTO_VERSION" >&2
  fi
  nohup "$venv/bin/moto_server" -H 127.0.0.1 -p 5010 >"$OSPREY_SERVICES_DIR/moto.log" 2>&1 &
  wait_port 5010 60
}

# Credentials and region for the local servers (they accept any).
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-osprey-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-osprey-test}"
export AWS_REGION="${AWS_REGION:-us-east-1}"

start_redis
start_kinesis
start_moto

echo "services: OSPREY_REDIS_URL=$OSPREY_REDIS_URL OSPREY_KINESIS_ENDPOINT=$OSPREY_KINESIS_ENDPOINT OSPREY_S3_ENDPOINT=$OSPREY_S3_ENDPOINT" >&2
